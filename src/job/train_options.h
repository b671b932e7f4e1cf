// Every option of `xltune train`, in one struct: the seed trainer's inputs under their seed
// names and defaults, and what xltune adds. The cli part binds each field to its command-line
// and config-file option once (cli/option_table.h); validate_train_options() checks each value
// once; run_config.json records all of them as resolved.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/ScalarType.h>

#include "core/attention_kernel.h"
#include "data/preprocess.h"
#include "train/lr_schedule.h"

namespace xltune {

// --zero: ZeRO-1 for full fine-tuning on many ranks.
enum class ZeroMode { kAuto, kOn, kOff };
// --adamw_kernel: AdamW's foreach or fused kernel (train/adamw.h); auto: fused on a GPU, foreach
// on the CPU (resolved by trainer_config_from, which knows the device).
enum class AdamWKernelChoice { kAuto, kForeach, kFused };
// --lora_fused_projections: Note [LoRA's shared down-projection] (models/lora.h); auto: on on a GPU,
// off on the CPU (the replay against diffusers + peft stays exact there).
enum class LoraFusedChoice { kAuto, kOn, kOff };
// --lora_product_dtype: Note [LoRA's product in bf16] (models/lora.h); auto: bf16 on a GPU whose
// UNet is bf16, fp32 otherwise.
enum class LoraProductChoice { kAuto, kFp32, kBf16 };
// --cuda_graph: Note [The step as a CUDA graph] (train/trainer.h); static: the captured step's
// static-input body run eagerly, through the same warm-up, capture and replay counts, on any
// device (TrainerConfig::StepGraph::kStatic: how the CPU tests the plumbing end to end).
enum class CudaGraphChoice { kOff, kOn, kStatic };
// --report_to (diffusers' name): where rank 0 logs the metrics besides metrics.jsonl.
enum class ReportTo { kNone, kTensorBoard };

struct TrainOptions {
  // The seed's inputs (../docs/design.md "Command line"); preprocessing ones live in `prep`
  // (resolution, token_string, caption_prefix, mask_target_prompts, crop_based_on_salience,
  // use_face_detection_instead, clipseg_temperature) and are shared with `xltune preprocess`.
  std::string input_images;
  std::optional<uint64_t> seed;  // unset: a random seed, printed and recorded
  int64_t train_batch_size = 4;
  // Steps: --max_train_steps when given (or when neither is), else --num_train_epochs
  // (resolve_total_steps); unset: not given.
  std::optional<int64_t> num_train_epochs;
  std::optional<int64_t> max_train_steps;
  static constexpr int64_t kDefaultEpochs = 4000, kDefaultMaxTrainSteps = 1000;  // the seed's
  bool is_lora = true;
  double unet_learning_rate = 1e-6;
  double ti_lr = 3e-4;
  double lora_lr = 1e-4;
  LrScheduleKind lr_scheduler = LrScheduleKind::kConstant;
  int64_t lr_warmup_steps = 100;
  bool verbose = true;
  int64_t checkpointing_steps = 200;
  PreprocessOptions prep;

  // xltune's own.
  std::string model;
  std::string model_config;  // configs for a single-file --model (default: SDXL base's)
  std::string variant;       // "fp16": prefer the fp16 weight files of a folder
  std::string output_dir = "training_out";
  std::string shards;        // an earlier `xltune preprocess` output instead of --input_images
  int64_t lora_rank = 32;
  std::optional<double> lora_alpha;  // unset: = lora_rank
  bool gradient_checkpointing = false;
  double snr_gamma = 0;
  double noise_offset = 0;
  double max_grad_norm = 1.0;
  int64_t gradient_accumulation_steps = 1;  // micro-batches per step (Note [Gradient accumulation])
  double grad_spike_factor = 0;             // Note [Skipped steps]; 0: off
  int64_t max_skipped_steps = 20;           // skipped steps in a row that end the run
  double caption_dropout_rate = 0;          // share of samples trained on the empty prompt
  std::string device = "auto";  // auto | cpu | cuda | cuda:N
  // Only deterministic kernels: bit-identical runs and resumes on GPUs as on CPUs, at a cost (Note
  // [Deterministic mode], core/placement.h). Not part of the run's meaning: it changes a step's
  // last bits, not what the step is.
  bool deterministic = false;
  AttentionKernel attention = AttentionKernel::kAuto;  // Note [Attention kernels]
  at::ScalarType optimizer_state_dtype = at::kFloat;  // fp32 or bf16 (AdamW moments)
  AdamWKernelChoice adamw_kernel = AdamWKernelChoice::kAuto;
  LoraFusedChoice lora_fused_projections = LoraFusedChoice::kAuto;
  LoraProductChoice lora_product_dtype = LoraProductChoice::kAuto;
  // Note [The step as a CUDA graph] (train/trainer.h): capture the step once per batch shape and
  // replay it. Off by default until a GPU run has measured it (bench/gpu/run).
  CudaGraphChoice cuda_graph = CudaGraphChoice::kOff;
  at::ScalarType save_dtype = at::kBFloat16;          // unet.safetensors of full fine-tuning
  std::string dump_steps;           // folder for the per-step dumps (empty: none)
  int64_t log_every = 10;           // progress line every N steps when not on a terminal
  int threads = 0;                  // CPU threads for libtorch (0: its default)
  int64_t replica_check_steps = 0;  // every N steps, check that all ranks hold the same weights
  std::string resume = "auto";      // auto (OUTPUT_DIR/checkpoints/latest when there), none, or a checkpoint
  int checkpoints_total_limit = 2;  // complete checkpoints kept (0: all)
  ZeroMode zero = ZeroMode::kAuto;  // auto: on for full fine-tuning on many ranks
  // An EMA of the UNet's trained tensors, exported and validated instead of them (Note [EMA of
  // the trained weights], train/ema.h); the decay's cap, diffusers' default.
  bool use_ema = false;
  double ema_decay = 0.9999;
  // Seconds a collective may wait for the other ranks before the job ends, naming the rank and the
  // step (Note [No hang], dist/collective_watchdog.h); PyTorch's default; 0: no limit.
  double collective_timeout = 600;
  ReportTo report_to = ReportTo::kNone;  // tensorboard: OUTPUT_DIR/logs/ (job/tensorboard_log.h)
  // The dtype gradients travel in between ranks (Note [bf16 gradient reduction]): kFloat, kBFloat16,
  // or kUndefined ("auto"): bf16 for full fine-tuning on NCCL, fp32 otherwise (grad_reduce_dtype_for).
  at::ScalarType grad_reduce_dtype = at::ScalarType::Undefined;
  at::ScalarType zero_gather_dtype = at::kFloat;  // ZeRO-1's all-gather of the updated weights: fp32 or bf16
  // ZeRO-1: the fraction of the UNet's parameters, first in forward order, kept replicated
  // (Note [Replicated stem under ZeRO-1]); unset: kDefaultZeroReplicatedFraction, the shortest
  // step bench/scaling_model.py finds for 8 A40s over PCIe at 1024² batch 1.
  static constexpr double kDefaultZeroReplicatedFraction = 0.3;
  std::optional<double> zero_replicated_fraction;
  // Validation images (job/validation.h): prompts (TOK becomes the trained tokens), every N steps
  // and at the end (0: at the end only), images per prompt, and how they are made.
  std::vector<std::string> validation_prompts;
  int64_t validation_steps = 0;
  int64_t num_validation_images = 2;
  int64_t validation_inference_steps = 25;
  double validation_guidance_scale = 7.5;
  std::string validation_scheduler = "K_EULER";
  // The validation loss (job/validation_loss.h, Note [Validation loss]): every N steps and at the
  // end (0: off), on M images chosen from the seed, held out of training when the set has 5 M or
  // more (unset: kDefaultValidationLossImages).
  int64_t validation_loss_steps = 0;
  std::optional<int64_t> validation_loss_images;
  static constexpr int64_t kDefaultValidationLossImages = 4;

  // --resolution as given: the side preprocessing makes (prep.resolution when absent). With
  // --shards the shards' own, which a given --resolution must equal.
  std::optional<int> resolution;

  // The samples a rank takes from the sampler per step: batch x micro-batches.
  int64_t samples_per_rank_step() const { return train_batch_size * gradient_accumulation_steps; }
};

// The preprocessing the run does: prep with --resolution when given.
PreprocessOptions preprocess_options_of(const TrainOptions& o);

// Checks every value that can be checked without the model and the data; throws Error naming
// the option and what was expected.
void validate_train_options(const TrainOptions& o);

// The number of optimization steps: --max_train_steps when given (or neither was given),
// else --num_train_epochs x steps per epoch. The reference always overshoots to whole epochs;
// xltune stops exactly here.
int64_t resolve_total_steps(const TrainOptions& o, int64_t steps_per_epoch);

}  // namespace xltune
