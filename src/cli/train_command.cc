// xltune train: a zip of photos and an SDXL model in, OUTPUT_DIR/trained_model.tar out. The
// options are the seed trainer's inputs under their names and defaults, plus what a cluster run
// needs; see job/train_options.h for the fields and job/train_job.h for what happens.
#include <boost/program_options.hpp>
#include <cstdlib>
#include <iostream>
#include <optional>

#include "cli/command.h"
#include "cli/launch_world.h"
#include "cli/option_table.h"
#include "core/check.h"
#include "core/log.h"
#include "core/placement.h"
#include "dist/communicator.h"
#include "job/run_hooks.h"
#include "job/stop_signal.h"
#include "job/train_job.h"

namespace po = boost::program_options;

namespace xltune::cli {

namespace {

const char* const kDescription =
    "Fine-tunes SDXL on a few photos of an object or a style: the images are preprocessed\n"
    "(masked, cropped, captioned) into HDF5 shards, encoded once by the VAE, and trained with\n"
    "LoRA on the UNet's attention (or full fine-tuning) plus new token embeddings <s0><s1>\n"
    "for --token_string in both text encoders (pivotal tuning: the embeddings train for the\n"
    "first half of the steps). Outputs in --output_dir: trained_model.tar (lora.safetensors,\n"
    "embeddings.pti, special_params.json as Replicate's trainer writes them, plus\n"
    "lora_kohya.safetensors and embeddings_sdxl.safetensors for diffusers, ComfyUI and\n"
    "AUTOMATIC1111), run_config.json, metrics.jsonl, loss.png, and every --checkpointing_steps\n"
    "checkpoints/step-N/. Options may also come from --config FILE (name = value lines);\n"
    "the command line wins. Boolean options take a value: --is_lora false.";

}  // namespace

namespace {

std::vector<std::pair<std::string, LrScheduleKind>> lr_schedule_choices() {
  std::vector<std::pair<std::string, LrScheduleKind>> choices;
  for (size_t i = 0; i < lr_schedule_names().size(); ++i)
    choices.emplace_back(lr_schedule_names()[i], static_cast<LrScheduleKind>(i));
  return choices;
}

// The seed trainer's inputs under their names and defaults.
void add_seed_options(OptionTable& inputs, TrainOptions& o) {
  inputs.add("input_images", &o.input_images, "the photos: .zip, .tar, .tar.gz, or a folder")
      .add_optional("seed", &o.seed, "random seed for a reproducible run (default: a random one, printed)")
      .add("train_batch_size", &o.train_batch_size, "images per step (per rank)")
      .add_optional("num_train_epochs", &o.num_train_epochs, TrainOptions::kDefaultEpochs,
                    "passes over the images; used only when --max_train_steps is not given")
      .add_optional("max_train_steps", &o.max_train_steps, TrainOptions::kDefaultMaxTrainSteps,
                    "optimization steps; takes precedence over --num_train_epochs")
      .add("is_lora", &o.is_lora, "true: LoRA on the UNet's attention; false: full fine-tuning of the UNet")
      .add("unet_learning_rate", &o.unet_learning_rate, "learning rate of full fine-tuning (1e-6 to 1e-5)")
      .add("ti_lr", &o.ti_lr, "learning rate of the new token embeddings")
      .add("lora_lr", &o.lora_lr, "learning rate of the LoRA weights")
      .add_choice("lr_scheduler", &o.lr_scheduler, lr_schedule_choices(), "constant, constant_with_warmup, linear or cosine (as diffusers')")
      .add("lr_warmup_steps", &o.lr_warmup_steps, "warmup steps of constant_with_warmup, linear and cosine")
      .add("verbose", &o.verbose, "print progress")
      .add("checkpointing_steps", &o.checkpointing_steps, "steps between checkpoints (OUTPUT_DIR/checkpoints/step-N)");
  inputs.add_optional("resolution", &o.resolution, o.prep.resolution, kResolutionHelp);
  add_preprocess_options(inputs, o.prep);
}

// What xltune adds: the model, the step's arithmetic and the loss.
void add_model_and_step_options(OptionTable& own, TrainOptions& o) {
  own.add("model", &o.model, "SDXL model: a diffusers folder or a single-file .safetensors checkpoint (required)")
      .add("model_config", &o.model_config, "single-file --model: a folder with unet/ and vae/ config.json "
                                            "(default: SDXL base 1.0's)")
      .add("variant", &o.variant, "fp16: load a folder's *.fp16.safetensors weights")
      .add("output_dir", &o.output_dir, "where everything is written")
      .add("shards", &o.shards, "train on an earlier `xltune preprocess` output instead of --input_images")
      .add("lora_rank", &o.lora_rank, "LoRA rank")
      .add_optional("lora_alpha", &o.lora_alpha, "LoRA alpha; the update is scaled by alpha/rank (default: = rank)")
      .add("gradient_checkpointing", &o.gradient_checkpointing,
           "recompute the UNet's activations in backward: less memory, about a third more compute")
      .add("snr_gamma", &o.snr_gamma, "min-SNR loss weighting gamma (0: off; 5 is usual)")
      .add("noise_offset", &o.noise_offset, "offset noise strength (0: off)")
      .add("max_grad_norm", &o.max_grad_norm, "gradients are clipped to this global norm")
      .add("gradient_accumulation_steps", &o.gradient_accumulation_steps,
           "micro-batches of --train_batch_size per optimizer step: the global batch is ranks x batch x this; "
           "only the last micro-batch communicates")
      .add("grad_spike_factor", &o.grad_spike_factor,
           "skip a step whose gradient norm exceeds this factor x the median of the last 100 accepted steps "
           "(judged after 10 accepted; 0: off). A step with a non-finite loss or gradient on any rank is always "
           "skipped, on every rank: weights, optimizer state and the learning-rate schedule stay as they were")
      .add("max_skipped_steps", &o.max_skipped_steps,
           "this many skipped steps in a row end the run with an error (the last checkpoint stays intact)")
      .add("caption_dropout_rate", &o.caption_dropout_rate,
           "share of samples trained on the empty prompt instead of their caption (0: none), drawn per sample "
           "and step from the seed");
}

// Where and with which kernels the step runs: none of it changes what the step is.
void add_device_options(OptionTable& own, TrainOptions& o) {
  own.add("device", &o.device, "auto, cpu, cuda or cuda:N")
      .add("deterministic", &o.deterministic,
           "only deterministic kernels (deterministic algorithms, CUBLAS_WORKSPACE_CONFIG=:4096:8, NCCL_ALGO=Ring, no "
           "cuDNN benchmark): two runs, and a run and its resume, are bit-identical on GPUs as on CPUs (same GPU "
           "model, libraries and GPU count); slower. The CPU's kernels are deterministic either way")
      .add_choice("attention", &o.attention, attention_kernel_choices(),
                  "the attention kernel: auto (libtorch picks per shape: flash or memory-efficient on a GPU, flash on the CPU; "
           "each shape's choice is logged once), or flash, efficient, cudnn or math to force that one (a shape it "
           "cannot run is an error naming it)")
      .add_choice("optimizer_state_dtype", &o.optimizer_state_dtype, {{"fp32", at::kFloat}, {"bf16", at::kBFloat16}},
           "fp32 or bf16 (AdamW moments in bf16 with stochastic rounding: half the memory, for full "
           "fine-tuning on one 48 GB GPU)")
      .add_choice("adamw_kernel", &o.adamw_kernel,
                  {{"auto", AdamWKernelChoice::kAuto}, {"foreach", AdamWKernelChoice::kForeach},
                   {"fused", AdamWKernelChoice::kFused}},
                  "AdamW's kernel: foreach (one multi-tensor op per line of the update; on the CPU the same bits "
                  "as torch's single-tensor AdamW), fused (torch's fused AdamW, one pass, step counts on the "
                  "device; the same update but for the last bits) or auto: fused on a GPU, foreach on the CPU")
      .add_choice("lora_fused_projections", &o.lora_fused_projections,
                  {{"auto", LoraFusedChoice::kAuto}, {"on", LoraFusedChoice::kOn}, {"off", LoraFusedChoice::kOff}},
                  "LoRA: the down-projections of the adapters that read one input (attn1's q, k, v; attn2's k, v) "
                  "as one GEMM, and their gradients as two: fewer, wider ops, the same step but for the last bits. "
                  "auto: on on a GPU, off on the CPU (where the replay against diffusers + peft is exact)")
      .add_choice("lora_product_dtype", &o.lora_product_dtype,
                  {{"auto", LoraProductChoice::kAuto}, {"fp32", LoraProductChoice::kFp32}, {"bf16", LoraProductChoice::kBf16}},
                  "LoRA: the dtype its product runs in: fp32 (the adapters' own; the input cast to it and kept for "
                  "backward) or bf16 (A and B cast from their fp32 masters each step, the input as it is, the "
                  "gradients back in fp32: autocast's mixed precision; less memory, the tensor cores). auto: bf16 on "
                  "a GPU, fp32 on the CPU (where the replay against diffusers + peft is exact)")
      .add_choice("cuda_graph", &o.cuda_graph,
                  {{"false", CudaGraphChoice::kOff}, {"true", CudaGraphChoice::kOn}, {"static", CudaGraphChoice::kStatic}},
                  "true: capture the training step as a CUDA graph per batch shape (each aspect bucket's kept) and "
                  "replay it: the host issues a step's ~17,000 kernels with one call. Steps after the pivot with the "
                  "fused AdamW kernel (fp32 or bf16 state); on several GPUs the step is two graphs "
                  "with the gradients' all-reduce between them (ZeRO-1: three, the reduce-scatter and the norm's "
                  "all-reduce between them, the all-gathers after), with gradient accumulation a graph per "
                  "micro-batch (up to 8) and the update's; other steps run as usual (the reason is logged once). "
                  "Needs a CUDA device. static: the same steps from the same static inputs, run eagerly on any "
                  "device (to check the plumbing: it trains bit for bit as false)"); 
}

// Outputs, checkpoints, many ranks, validation.
void add_run_options(OptionTable& own, TrainOptions& o) {
  own.add_choice("save_dtype", &o.save_dtype, {{"bf16", at::kBFloat16}, {"fp16", at::kHalf}, {"fp32", at::kFloat}}, "dtype of unet.safetensors (full fine-tuning): bf16, fp16 or fp32")
      .add("dump_steps", &o.dump_steps, "a folder for what enters every step (for checking against another trainer)")
      .add("log_every", &o.log_every, "progress line every N steps when the output is not a terminal")
      .add("threads", &o.threads, "CPU threads (0: libtorch's default)")
      .add("resume", &o.resume, "auto: continue from OUTPUT_DIR/checkpoints/latest when it exists; none: start "
                                "over; or a checkpoint folder")
      .add("checkpoints_total_limit", &o.checkpoints_total_limit, "complete checkpoints kept (0: all)")
      .add_choice("zero", &o.zero, {{"auto", ZeroMode::kAuto}, {"on", ZeroMode::kOn}, {"off", ZeroMode::kOff}}, "ZeRO-1: shard the UNet's AdamW state over the ranks, 1/N of it on each of N ranks. "
                            "auto: for full fine-tuning on 2+ ranks; on: the same, and an error with LoRA; off: "
                            "every rank holds all of it")
      .add("use_ema", &o.use_ema,
           "keep an exponential moving average of the UNet's trained tensors (LoRA A and B, or the whole "
           "UNet; not the token embeddings), as diffusers' EMAModel, and export and validate it instead of "
           "the last weights; replicated on every rank: full fine-tuning holds one more fp32 UNet")
      .add("ema_decay", &o.ema_decay,
           "with --use_ema: the cap of the average's decay, which after step t + 1 is min(ema_decay, "
           "(1 + t) / (10 + t)) (0 after step 1), as diffusers' EMAModel")
      .add_choice("report_to", &o.report_to, {{"none", ReportTo::kNone}, {"tensorboard", ReportTo::kTensorBoard}},
                  "none, or tensorboard: the metrics and validation images as TensorBoard event files in "
                  "OUTPUT_DIR/logs/ (`tensorboard --logdir OUTPUT_DIR/logs`)")
      .add_choice("grad_reduce_dtype", &o.grad_reduce_dtype,
                  {{"auto", at::ScalarType::Undefined}, {"fp32", at::kFloat}, {"bf16", at::kBFloat16}},
                  "many ranks: the dtype gradients are averaged in (fp32 or bf16: half the bytes, the mean rounded to "
                  "bf16). auto: bf16 for full fine-tuning on GPUs (NCCL sums bf16), fp32 otherwise (MPI sums bf16 "
                  "through an fp32 copy, no faster)")
      .add_choice("zero_gather_dtype", &o.zero_gather_dtype, {{"fp32", at::kFloat}, {"bf16", at::kBFloat16}},
                  "ZeRO-1: the dtype the updated weights are all-gathered in. bf16: half the bytes; every rank keeps "
                  "fp32 masters of its own shard and trains with the bf16-rounded weights")
      .add_optional("zero_replicated_fraction", &o.zero_replicated_fraction, TrainOptions::kDefaultZeroReplicatedFraction,
                    "ZeRO-1: the fraction (0 to 1) of the UNet's parameters, the first the forward reads, kept "
                    "replicated: all-reduced in backward, which has time to spare, instead of all-gathered while "
                    "the next forward waits. Costs 8 bytes of optimizer state per replicated parameter on every "
                    "rank (4 with --optimizer_state_dtype bf16); 0: all sharded, 1: none")
      .add_list("validation_prompt", &o.validation_prompts,
                "render this prompt while training (may be given several times; TOK becomes the trained tokens) "
                "into OUTPUT_DIR/samples/step-N.png: prompts x --num_validation_images, the same seeds every time")
      .add("validation_steps", &o.validation_steps, "validation images every N steps and at the end (0: at the end only)")
      .add("num_validation_images", &o.num_validation_images, "validation images per prompt")
      .add("validation_inference_steps", &o.validation_inference_steps, "denoising steps of the validation images")
      .add("validation_guidance_scale", &o.validation_guidance_scale, "guidance scale of the validation images")
      .add("validation_scheduler", &o.validation_scheduler, "sampler of the validation images (xltune generate's names)")
      .add("validation_loss_steps", &o.validation_loss_steps,
           "every N steps and at the end, the loss on --validation_loss_images images at 4 fixed timesteps and "
           "fixed noise, in metrics.jsonl (validation_loss), the progress line and loss.png (0: off). The images "
           "are chosen from the seed and held out of training when the set has 5 times as many, else they are "
           "training images (run_config.json says which)")
      .add_optional("validation_loss_images", &o.validation_loss_images, TrainOptions::kDefaultValidationLossImages,
                    "images of the validation loss (at most the set's)")
      .add("replica_check_steps", &o.replica_check_steps,
           "many ranks: every N steps check that all ranks hold identical weights (0: never)")
      .add("collective_timeout", &o.collective_timeout,
           "many ranks: seconds a collective may wait for the others before the job ends, naming the rank and "
           "the step (a rank died or hangs; 0: no limit)");
}

// What xltune adds, in --help's order.
void add_own_options(OptionTable& own, TrainOptions& o) {
  add_model_and_step_options(own, o);
  add_device_options(own, o);
  add_run_options(own, o);
}

// The command line, then --config FILE for what it leaves out; nullopt: --help was printed.
std::optional<po::variables_map> parse_train_args(const std::vector<std::string>& args,
                                                  const po::options_description& options) {
  po::variables_map vm;
  std::vector<std::string> rest(args.begin() + 1, args.end());
  try {
    po::store(po::command_line_parser(rest).options(options).run(), vm);
    if (vm.count("help")) {
      std::cout << usage("train", "--model MODEL --input_images PHOTOS.zip [options]", kDescription, options);
      return std::nullopt;
    }
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      try {
        po::store(po::parse_config_file<char>(path.c_str(), options), vm);
      } catch (const po::reading_file&) {
        throw UsageError(str("--config ", path, ": cannot read the file"), __FILE__, __LINE__);
      } catch (const po::error& e) {
        throw UsageError(str("--config ", path, ": ", e.what()), __FILE__, __LINE__);
      }
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(str(e.what(), " (see xltune train --help)"), __FILE__, __LINE__);
  }
  return vm;
}

void print_report(const TrainJobReport& r) {
  std::cout << "trained " << r.steps << " steps on " << r.samples << " images in " << std::fixed;
  std::cout.precision(1);
  std::cout << r.seconds << " s (seed " << r.seed << ", final loss ";
  std::cout.precision(4);
  std::cout << r.final_loss << ")\n";
  if (r.skipped_steps > 0)
    std::cout << "  " << r.skipped_steps << " steps skipped (non-finite or spiking gradients; see metrics.jsonl)\n";
  if (r.step_graph)  // Note [The step as a CUDA graph]: did the graph replay, and how often
    std::cout << "  " << (r.step_graph_static ? "--cuda_graph static: " : "CUDA graph: ") << r.graphed_steps
              << " steps from static inputs: " << r.graph_captures << " captures, " << r.graph_replays << " replays"
              << (r.step_graph_static ? " (where a GPU would; all run eagerly)" : "")
              << ", the rest warm-ups or eager steps (the log says why)\n";
  // Note [Reading a step one step late]: how often the host queued a step before reading the last.
  std::cout << "  " << r.steps_read_late << " steps queued on the device before the host read the step before"
            << " them (not where a checkpoint or validation is due; the log says what else stops it)\n";
  std::cout << "  " << r.tar_path << ":";
  for (const auto& f : r.files) std::cout << " " << f;
  std::cout << "\n  also in " << r.output_dir << ": run_config.json, metrics.jsonl, loss.png, trainer_state.safetensors\n";
}

}  // namespace

int train_command(const std::vector<std::string>& args) {
  // The process's signals, so the command's to take: SIGTERM/SIGUSR1 then stop the run through
  // process_run_hooks() (job/run_hooks.h), at a phase boundary before the first step or at a step
  // boundary after it, with exit 75 either way. First of all, so that no stop is fatal: the program
  // installs them even before its libraries initialise (cli/main.cc); again here for a caller
  // that enters without main.
  install_stop_handlers();
  TrainOptions o;
  std::string config_file;
  OptionTable inputs("Training inputs (the seed trainer's names and defaults)");
  inputs.description().add_options()("help,h", "show this help");
  add_seed_options(inputs, o);
  OptionTable own("xltune's options");
  add_own_options(own, o);
  own.description().add_options()("config", po::value<std::string>(&config_file),
                                  "read options from FILE (configs/*.cfg); the command line wins");
  OptionTable limits("Limits (an archive is untrusted input)");
  add_ingest_limit_options(limits, o.prep);
  po::options_description options;
  options.add(inputs.description()).add(own.description()).add(limits.description());

  const std::optional<po::variables_map> parsed = parse_train_args(args, options);
  if (!parsed) return 0;
  finish_preprocess_options(o.prep);
  try {
    validate_train_options(o);
  } catch (const Error& e) {
    throw UsageError(e.what(), __FILE__, __LINE__);
  }
  // --verbose false (the seed's "Verbose output"): no progress and no informational lines, only
  // warnings, errors and the final summary; XLTUNE_LOG_LEVEL still decides when it is set.
  if (!o.verbose && std::getenv("XLTUNE_LOG_LEVEL") == nullptr) set_log_level(LogLevel::kWarn);
  nlohmann::ordered_json values = nlohmann::ordered_json::object();
  inputs.values_into(values);
  own.values_into(values);
  limits.values_into(values);
  values["config"] = config_file.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(config_file);

  // Note [Deterministic mode]: the variables cuBLAS and NCCL read at their first use, set while this
  // thread is the only one (MPI's initialisation, next, starts others and may touch CUDA).
  if (o.deterministic) set_deterministic_environment();
  std::unique_ptr<Communicator> comm = launcher_communicator();
  // Again after MPI's initialisation, which cannot then have replaced them (a stop that came
  // before is kept: the flag is the process's).
  install_stop_handlers();
  TrainJobReport r;
  try {
    r = run_train_job(o, values, *comm, process_run_hooks());
  } catch (const std::exception& e) {
    if (comm->size() == 1) throw;
    abort_job(*comm, "train", e);
  }
  if (r.stopped) return kExitRequeue;  // every rank: the batch script requeues on 75
  if (comm->rank() == 0) print_report(r);
  return 0;
}

}  // namespace xltune::cli
