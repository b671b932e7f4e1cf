// One optimization step of SDXL fine-tuning, on one rank, as the contract in
// docs/training-step.md states it; the loop around it (data, progress, checkpoints) is the
// job's (src/job/). Built from libtorch alone, so the GPU benchmarks drive it directly.
//
// Per step s (1-based), for this rank's samples at global batch positions p:
//   draws      n, eps, t (and the offset noise) from generators keyed by (seed, s, p)
//   latents    x0 = (mean + exp(logvar / 2) n) * scaling_factor
//   text       context = cat(TE1.hidden[-2], TE2.hidden[-2]), pooled = TE2.text_embeds
//              (encoders run while the token rows train; cached per caption after the pivot)
//   noising    x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps; target eps or v (prediction_type)
//   loss       mean((unet(x_t, t, context, pooled, time_ids) - target)^2 * mask)  (min-SNR
//              weighted per sample with --snr_gamma)
//   update     backward (per micro-batch, Note [Gradient accumulation]); gradients averaged over
//              ranks (GradientReducer); clipped to a global norm of max_grad_norm; the step
//              skipped on every rank when that norm is not finite or spikes (Note [Skipped
//              steps]); else AdamW at lr * schedule.factor(accepted steps); token rows rescaled
//              (Note [Pivotal tuning]); the EMA of the UNet's trained
//              tensors updated (--use_ema, Note [EMA of the trained weights]); gradients cleared
//
// Note [Gradient accumulation]
// With K micro-batches a step is still one optimizer step: the rank's samples of the step (as
// the sampler hands out a batch of K b) are split into K micro-batches of b, each runs forward
// and backward with its loss weighted by its share of the rank's samples, and the gradients
// accumulate in place (the reducers' buckets); only the last backward communicates
// (set_gradient_sync). The samples keep their positions in the global batch, so the keyed draws
// make 1 rank x b x K, K ranks x b and 1 rank x K b the same step, up to summation order.
//
// Note [The step's verdict on the device]
// Whether a step is taken (Note [Skipped steps]) depends on its gradient norm, which the GPU
// computes after backward. Reading it there (an item()) would stop the host until the GPU has
// finished backward and leave the GPU idle while the host then issues the update (issue 18:
// no host sync between the forward and the optimizer step). So the verdict stays on the device:
//   - clip_gradients returns the norm as a 0-dim device tensor;
//   - BadStepGuard::verdict_on_device turns it into apply (1 take, 0 skip): finite, and not
//     above the spike threshold, which the host computes from earlier steps' norms, all known;
//   - every Optimizer::step takes apply: the fused AdamW kernel as found_inf = 1 - apply (it
//     then writes nothing) with its device step counts advanced by apply; the pivotal rows'
//     rescale multiplies by exactly 1 where apply is 0. The learning rate is the schedule's at
//     accepted steps + 1, a host number since the host knows every earlier verdict;
//   - after the update is queued, one copy brings the norm, apply and the loss to the host (one
//     device-to-host copy, the step's only sync, waited for one step late where it can be: Note
//     [Reading a step one step late]); the host recomputes the verdict from the norm (its reason
//     for the log), checks it equals the device's, settles the optimizers' host step counts, and
//     updates the guard. The EMA's update is queued after the update, its weight times apply.
// The foreach AdamW kernel computes its bias corrections on the host, so it reads apply itself
// (free on the CPU, where it is the default; a sync on a GPU, where fused is the default).
// Taken steps compute exactly what they computed before: the verdict only gates.
//
// Note [Reading a step one step late]
// Waiting for a step's read as soon as it is queued would make the host wait for the GPU to
// finish the step before it prepares the next, and the GPU would then idle while the host draws
// the next step's noise, stages its inputs and issues (or replays) its first kernels. So issue()
// queues a step and its read (a non-blocking copy into pinned memory, train/step_read.h) and
// returns; the read is waited for, and the step settled, once the next step is queued behind it
// (by then the copy is long done), or by collect(). Step s is then queued before the host knows
// whether s - 1 was taken, and three of its inputs follow the steps accepted before it
// (StepInputs, made at issue()): the learning-rate factor (factor(accepted + 1): the schedule
// advances with accepted steps), the spike threshold (from the accepted norms: Note [Skipped
// steps]) and the EMA's decay. Each is computed both ways on the host (EitherWay,
// train/either_way.h) and the device picks one with s - 1's verdict: the optimizers' learning
// rates are device tensors written with a fill and a masked fill (the fused kernel's tensor form,
// which every run on the fused kernel uses, late or not); the threshold with s - 1's norm
// accepted is a median taken with two clamps on the device (BadStepGuard::threshold_after); the
// EMA's weight is written the same way and multiplied by s's own verdict. The foreach kernel
// reads its learning rate on the host: with it, where the factor depends on s - 1's verdict (a
// warm-up, linear or cosine decay), issue() settles s - 1 first (late_read_blocker).
// A step settled first is read at collect() as step() (issue() then collect()) always reads it.
// Reading late changes no bit: the same work is queued in the same order with the same values
// (the host's check of each verdict against its own, at settle, would fail otherwise), and the
// host learns the outcome one step later; the result's learning rates are picked at settle. What needs the host
// side settled (checkpoint_tensors, rank_optimizer_state, restore, ema_weights_in) checks that no
// step is in flight; the training loop (job/training_loop.h) collects before it writes a
// checkpoint, validates, dumps a step or ends, and its ranks agree on a stop (on the host's
// communicator, which does not wait for the GPU) before they issue the next step.
//
// Note [The step as a CUDA graph]
// On a GPU the eager step is host-bound: issuing its ~17,000 ops takes as long as the GPU takes
// to run them (bench/figures/gpu-h200.md). A CUDA graph issues them all with one call. A graph
// replays the kernels it captured with the arguments and addresses they had then, so everything
// a step reads that changes from step to step must be a device tensor at a fixed address,
// written before the replay; and the host's side of the step (its bookkeeping) must happen
// without the ops that capture recorded. With --cuda_graph true (TrainerConfig::step_graph):
//   - the step's inputs are static tensors, one set per shape of the step (GraphedStep) and per
//     micro-batch in it (GraphedMicroBatch): the latent mean and log-variance, time ids, mask, the
//     draws (n, eps, t; drawn on the host as always, Note [Keyed draws]) and the text
//     conditioning, all copied in before the step;
//   - the body (train/trainer_graph.cc) is the eager step's device work from the latents to the
//     optimizer: noising, the UNet (under bf16 autocast for full fine-tuning, its cast cache off
//     as capture asks), the loss, backward (graph_forward_backward), the reduction
//     (finish_backward), clipping, the verdict against a device threshold
//     (BadStepGuard::spike_threshold written into a tensor) and AdamW reading device learning
//     rates (Optimizer::stage_learning_rates) (graph_update); its outputs (loss, norm, verdict,
//     x0) stay at the addresses capture gave them, and are copied out after each replay as the
//     eager step's are (StepRead; x0 cloned), before the next replay rewrites them;
//   - with one micro-batch on one rank the body is one graph, and the gradients, undefined when it
//     is captured, are allocated by backward in the graph's pool and rewritten there by each replay;
//   - with k micro-batches (Note [Gradient accumulation]) each one's forward and backward is a
//     graph of its own, and the update one more (k + 1 graphs, replayed in the order captured):
//     the first backward allocates the gradients in the pool, as above, and each later one adds
//     into them in place (autograd's accumulation into a defined .grad), the loss weighted by the
//     micro-batch's share of the step's samples, a constant of the step's shape; a graph per
//     micro-batch rather than one replayed k times, as the first one's backward allocates what
//     the later ones' add into (and micro-batches may differ in shape);
//   - on several ranks the reduction runs eagerly between the last micro-batch's graph and the
//     update's (a collective inside a graph would need the communicator's streams captured too):
//     backward runs with the gradient sync off into the bucketed reducer's buckets (their views
//     are .grad, at the same addresses every step), noting which tensors it reached; then
//     finish() launches every bucket's all-reduce and waits (Note [Gradient buckets]: the overlap
//     with backward is lost, the host's issuing of backward is not), a replay handing it what its
//     capture's backwards reached (GradientReducer::replayed_backward, so Note [Tensors without a
//     gradient] agrees over the ranks as in an eager step); then clipping and the update;
//   - ZeRO-1 (Note [Sharded optimizer state]) exchanges three times in a step, each eagerly
//     between graphs (Optimizer::communicates_in_step): its backward hooks, with the sync off,
//     only note what arrived in its buckets, and its reduce-scatters run with the reducer's
//     after the last micro-batch's graph; the local gradient norms (Optimizer::local_grad_norms,
//     into a tensor made at construction) are a graph of their own, so that the norm's
//     all-reduce (exchange_grad_norms) runs before the update's graph reads it; its update's
//     all-gathers (deferred: defer_parameter_exchange) start after that graph
//     (start_parameter_exchange) and are waited for before the next step's first graph, so the
//     forward's waits for them are no-ops inside it (k + 2 graphs). The overlap of the gathers
//     with the next forward and of the reduce-scatters with backward is given up;
//   - a replay's host side: Optimizer::replayed_step (the step counts that settle() advances),
//     Optimizer::replayed_backward (what the backward hooks noted).
// Which steps: after the pivot (the token rows frozen: their encoders run outside, from the text
// cache), up to 8 micro-batches, a reducer whose buckets are final
// (GradientReducer::capture_blocker: after the first step's rebuild), AdamW (replicated, or
// ZeRO-1 after its first step) on the fused kernel, fp32 or bf16 state (the rounding's key, a
// device tensor, staged before each step: Optimizer::stage_training_step). Any other step runs
// eagerly, its reason logged once. Every rank takes the same path at every step: each step's
// batch has one shape on all ranks (Note [Distributed sampler]).
// Each step shape (aspect buckets: one per bucket; a last, smaller batch) gets its own buffers
// and graphs, kept for when the shape comes back: kGraphWarmupSteps eager steps on the capture
// stream first (capture needs the libraries' lazy set-up done, cuDNN's choice of kernels
// included), then capture and replays. The graphs share one memory pool (train/step_capture.h
// says why that is safe), so many shapes cost about one step's memory; beyond max_graphed_shapes
// the shape used longest ago is dropped. An eager step or a restore drops them all (a replay
// repeats the host side of its capture's step: none may come between). The eager steps and the
// replays compute the same step: step_graph kStatic runs the same body from the same static
// tensors without capturing, through the same warm-up, capture and replay counts, which is how the
// CPU tests the plumbing (tests/train/trainer_graph_test.cc, TrainerStepGraph.*); on a GPU bench/gpu/run
// compares the captured run's losses with the eager run's.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "models/lora.h"
#include "sdxl/sdxl_model.h"
#include "train/adamw.h"
#include "train/bad_step_guard.h"
#include "train/either_way.h"
#include "train/ema.h"
#include "train/lr_schedule.h"
#include "train/pivotal_tuning.h"
#include "train/step_read.h"

namespace xltune {

class Communicator;
class StepCapture;

// ZeRO-1 for full fine-tuning on many ranks: the communicator whose ranks share the UNet's AdamW
// state (Note [Sharded optimizer state]), and the dtypes of its reduce-scatter and all-gather
// (Note [bf16 gradient reduction]), and the fraction of the UNet's parameters, first in forward
// order, kept replicated (Note [Replicated stem under ZeRO-1]). No communicator, or one rank: the
// state is replicated.
struct OptimizerShards {
  Communicator* comm = nullptr;
  at::ScalarType reduce_dtype = at::kFloat;
  at::ScalarType gather_dtype = at::kFloat;
  double replicated_fraction = 0.0;
};
class GradientReducer;

struct TrainerConfig {
  bool is_lora = true;
  int64_t lora_rank = 32;
  double lora_alpha = 32;
  double unet_learning_rate = 1e-6;
  double ti_lr = 3e-4;
  double lora_lr = 1e-4;
  LrSchedule schedule;
  int64_t max_train_steps = 1000;
  int64_t pivot_step = 500;  // the token rows train in steps 1..pivot_step
  int64_t num_new_tokens = 2;
  uint64_t seed = 0;
  double snr_gamma = 0;     // 0: plain MSE
  double noise_offset = 0;  // 0: none
  double max_grad_norm = 1.0;
  double grad_spike_factor = 0;  // Note [Skipped steps]; 0: only non-finite steps are skipped
  bool gradient_checkpointing = false;
  at::ScalarType optimizer_state_dtype = at::kFloat;
  // The AdamW kernel of every optimizer (train/adamw.h): not part of the run's meaning, a resume
  // may change it (the state is the same tensors either way).
  AdamWKernel adamw_kernel = AdamWKernel::kForeach;
  // LoRA's adapters of one input as one GEMM (Note [LoRA's shared down-projection]): like the
  // kernel, not part of the run's meaning (the last bits of a step, not what it is).
  bool lora_fused_projections = false;
  // The dtype of LoRA's product (Note [LoRA's product in bf16]); Undefined: the adapters' own
  // (fp32). Like the kernel, not part of the run's meaning.
  at::ScalarType lora_product_dtype = at::ScalarType::Undefined;
  // Note [The step as a CUDA graph]: kOff, every step eager; kCuda, captured where the step allows
  // (a CUDA device); kStatic, the same static-input step run eagerly (the CPU's stand-in, for the
  // tests). Not part of the run's meaning.
  enum class StepGraph { kOff, kCuda, kStatic };
  StepGraph step_graph = StepGraph::kOff;
  // How many batch shapes keep their graph at once; a new one beyond drops the one used longest ago.
  int64_t max_graphed_shapes = 16;
  // bf16 autocast for a fp32 UNet on CUDA (full fine-tuning): frozen weights are bf16 already.
  bool autocast_bf16 = false;
  // An EMA of the UNet's trained tensors, exported and validated instead of them (Note [EMA of
  // the trained weights]); ema_decay is diffusers' EMAModel decay (its cap).
  bool use_ema = false;
  double ema_decay = 0.9999;
};

// This rank's samples of one step (all on the training device).
struct StepBatch {
  at::Tensor latent_mean, latent_logvar;  // [b, C, h, w] fp32
  at::Tensor input_ids_1, input_ids_2;    // [b, 77] int64
  at::Tensor add_time_ids;                // [b, 6] fp32
  at::Tensor mask;                        // [b, 1, h, w] fp32 in [0, 1], at latent size
  std::vector<int64_t> positions;         // each sample's position in the global batch
  std::vector<int64_t> caption_keys;      // equal keys: equal token ids (text cache)
};

// What entered the step (for --dump_steps) and what came out.
struct StepResult {
  double loss = 0;       // this rank's loss (the global batch's when the world is one)
  double grad_norm = 0;  // global norm before clipping
  std::string skipped;   // why the optimizer step was skipped (Note [Skipped steps]); empty: taken
  int64_t skipped_in_a_row = 0;
  std::vector<std::pair<std::string, double>> learning_rates;  // per optimizer group, as used
  bool text_encoders_ran = false;
  at::Tensor x0, noise, timesteps;  // x0 on the training device (copied only by a dump), the draws on the CPU
};

// Where a step's phases end, for a per-phase breakdown (bench/train_bench): step() calls
// mark("begin") first, then mark(name) as each of "draws", "text", "forward", "backward",
// "clip" and "optimizer" has been issued. On a GPU the work may still be queued: a listener
// that wants device time records a CUDA event on the current stream in mark().
class StepPhaseListener {
 public:
  virtual ~StepPhaseListener() = default;
  virtual void mark(const char* phase) = 0;
};

// The step's draws made on the CPU (latent sample, noise: fp32; timesteps: int64 [b], each below
// 2^24) on `device`, with one host-to-device copy: one host buffer (pinned on CUDA), copied
// without blocking the host, split on the device, the timesteps back to int64 there. Without
// `stage` (the trainer's choice on the CPU) they are returned as they are. The same bits either way.
std::array<at::Tensor, 3> draws_to_device(const std::array<at::Tensor, 3>& draws, at::Device device, bool stage);

class Trainer {
 public:
  // Attaches LoRA (or marks the UNet trainable), adds the new tokens, builds the optimizers.
  // `model` must outlive the trainer. `optimizer_shards`: full fine-tuning on many ranks shards
  // the UNet's AdamW state over its communicator's ranks (ZeRO-1, Note [Sharded optimizer
  // state]); none or one rank: replicated.
  Trainer(SdxlModel& model, const TrainerConfig& config, double latent_scaling_factor,
          std::shared_ptr<GradientReducer> reducer, OptimizerShards optimizer_shards = {});
  ~Trainer();

  StepResult step(int64_t step, const StepBatch& batch);
  // One optimizer step over micro-batches (Note [Gradient accumulation]); `x0`, `noise` and
  // `timesteps` of the result are the micro-batches' concatenated. issue() then collect().
  StepResult step(int64_t step, const std::vector<StepBatch>& micro_batches);
  // Note [Reading a step one step late]: queues the step and returns; the step before it, when
  // not collected yet, is settled (read) now, after this one is queued, or first when this step
  // depends on its verdict. At most one step may be uncollected when issue() is called.
  void issue(int64_t step, const std::vector<StepBatch>& micro_batches);
  // The result of the oldest issued step not collected yet, settling it if needed.
  StepResult collect();
  // Whether an issued step is not settled yet (its read not waited for).
  bool step_in_flight() const { return in_flight_.has_value(); }
  // Steps issued while the step before was still in flight (read one step late), so far.
  int64_t steps_issued_before_settling() const { return steps_issued_before_settling_; }
  // Null (the default) for none; the listener must outlive the steps it hears.
  void set_phase_listener(StepPhaseListener* listener) { phases_ = listener; }

  const TrainerConfig& config() const { return config_; }
  std::vector<GroupSummary> groups() const;
  int64_t trainable_parameter_count() const;
  const UNetLora& lora() const { return lora_; }
  const PivotalTuning& pivotal() const { return *pivotal_; }
  const BadStepGuard& bad_step_guard() const { return guard_; }
  // Whether the UNet's optimizer state is sharded over the ranks (ZeRO-1).
  bool optimizer_state_sharded() const { return sharded_; }
  // Optimizer state bytes held by this rank (replicated + its shard).
  int64_t optimizer_state_bytes() const;
  // What this rank writes beside the checkpoint's shared file (its shard of the optimizer
  // state), or nothing.
  std::optional<RankOptimizerState> rank_optimizer_state() const;
  // The trainable tensors under their state names: "unet.<path>.<proj>.lora_A.weight" /
  // ".lora_B.weight" (LoRA), "unet.<param>" (full fine-tuning), "text_encoders_0" and
  // "text_encoders_1" (the token rows). CPU copies, fp32.
  NamedTensors trainable_state() const;
  // Everything a checkpoint needs from the trainer to continue exactly: the trainable tensors
  // and the optimizer's state (AdamW::state_tensors()); CPU tensors that may alias the live ones
  // (no copy on a CPU run): write them before the next step. The rest (draws, schedule, pivot)
  // follows from the step (Note [Keyed draws]).
  NamedTensors checkpoint_tensors() const;
  // The state after `completed_steps` steps, from checkpoint_tensors() of the same setup.
  // checkpoint_tensors() holds the EMA's shadows too ("ema.<name>", ParameterEma), when on.
  void restore(const std::map<std::string, at::Tensor>& tensors, int64_t completed_steps);

  // The EMA of the UNet's trained tensors, or null without --use_ema.
  const ParameterEma* ema() const { return ema_.get(); }
  // With --use_ema, the EMA's values in the live UNet tensors until the returned scope ends, then
  // the trained ones back, bit for bit (for validation images and the exported files); without
  // it, nothing. Const because what it changes it restores; no step may run inside it.
  ParameterEma::Swap ema_weights_in() const {
    require_settled("ema_weights_in");
    wait_parameters();
    return ParameterEma::Swap(ema_.get());
  }
  // Waits until every trained tensor holds its value of the last step: with ZeRO-1 the step
  // returns with its all-gathers in flight (Note [Sharded optimizer state]). The accessors here
  // that read or write the weights (trainable_state, checkpoint_tensors, rank_optimizer_state,
  // ema_weights_in, restore) wait themselves; so does the next step. Whoever reads the UNet's
  // weights otherwise between steps calls it first, on every rank at the same point (the thread
  // group, dist/thread_group.h, exchanges a collective when the ranks wait for it).
  void wait_parameters() const;

  // Note [The step as a CUDA graph]: steps run from the static inputs (eagerly, captured or
  // replayed), steps replayed from a captured graph, and captures, so far (with kStatic: the
  // steps that would have been replays and captures); the batch shapes held now.
  int64_t graphed_steps() const { return graphed_steps_; }
  int64_t graph_replays() const { return graph_replays_; }
  int64_t graph_captures() const { return graph_captures_; }
  int64_t graphed_shapes() const { return static_cast<int64_t>(graphs_.size()); }
  static constexpr int64_t kGraphWarmupSteps = 2;

  // Note [Validation loss] (src/job/validation_loss.h): the plain masked MSE (no min-SNR weight,
  // no offset noise) of sample `i` of `images` at the fixed timestep validation_timesteps()[k],
  // with n and epsilon from generators keyed by (seed, k, i) (DrawKind::kValidationLatentSample,
  // kValidationNoise): the same number on any rank, at any step, for the same weights. A batch of
  // one, no gradient, the text encoded per caption (the text cache read, never written): nothing
  // of training changes. The live weights: the caller swaps the EMA's in (ema_weights_in()).
  double validation_loss_term(const StepBatch& images, int64_t i, int64_t k) const;
  // The fixed timesteps: the midpoints of kValidationTimesteps equal parts of 0..T-1,
  // floor((2k + 1) T / (2 kValidationTimesteps)) (125, 375, 625, 875 for T = 1000).
  static constexpr int64_t kValidationTimesteps = 4;
  std::vector<int64_t> validation_timesteps() const;

  // The names the full fine-tuning selection trains (the reference's rule: every UNet
  // parameter but *.norm*.weight and *time*).
  static bool full_finetune_trains(const std::string& unet_parameter);

 private:
  void mark(const char* phase) {
    if (phases_ != nullptr && !capturing_) phases_->mark(phase);  // a listener's events are not captured
  }
  std::pair<at::Tensor, at::Tensor> text_conditioning(const StepBatch& batch, bool trains_rows, bool* ran);
  void freeze_token_rows();
  // Note [Keyed draws]: the step's latent sample, noise (with its offset) and timesteps, on the CPU.
  // Throws unless the batch has one position per sample.
  struct StepDraws {
    at::Tensor latent_sample, noise, timesteps;
  };
  StepDraws draw(int64_t step, const StepBatch& batch) const;
  // One micro-batch's forward and backward, its loss weighted by `weight`; returns the loss
  // (unweighted, detached) and fills the draws of `result`.
  at::Tensor forward_backward(int64_t step, const StepBatch& batch, bool trains_rows, double weight,
                              StepResult& result);
  // The masked MSE of the prediction, min-SNR weighted when snr_gamma > 0.
  at::Tensor loss_of(const at::Tensor& pred, const at::Tensor& target, const at::Tensor& mask,
                     const at::Tensor& t) const;
  // Clips every trainable gradient to max_grad_norm, as torch.nn.utils.clip_grad_norm_; returns
  // the global norm before clipping, a float32 0-dim tensor on the training device (not read).
  // In two parts where a captured step exchanges the norm between its graphs: the optimizers'
  // local_grad_norms and exchange_grad_norms, then clip_to_exchanged_norms (Optimizer).
  at::Tensor clip_gradients();
  at::Tensor clip_to_exchanged_norms();
  // A step issued whose read is not settled yet (Note [Reading a step one step late]).
  struct InFlightStep {
    int64_t step = 0;
    StepRead read;      // the norm, the verdict and the loss on their way to the host
    StepResult result;  // all but what the read brings; the learning rates if the step before was skipped
    at::Tensor grad_norm, apply;  // on the device, for the next step's inputs (StepInputs)
    // The learning rates if the step before (in flight when this one was issued) was taken, where
    // that made a difference; and how many steps the guard had accepted then.
    std::vector<std::pair<std::string, double>> learning_rates_if_taken;
    int64_t accepted_at_issue = 0;
    bool behind_another = false;  // issued while another was in flight
  };
  // What a step takes from the steps accepted before it, which the step in flight may still add
  // to (Note [Reading a step one step late]): made when the step is issued, before its work is
  // queued (a captured step's outputs, which the step in flight's verdict may be, are rewritten by
  // the next replay).
  struct StepInputs {
    EitherWay lr_factor;         // the schedule's factor
    at::Tensor spike_threshold;  // float64 0-dim on the device; undefined: the guard's host number
    at::Tensor ema_weight;       // with --use_ema: float32 0-dim, 1 - the EMA's decay if this step is taken
  };
  StepInputs step_inputs() const;
  // The eager step, queued up to its read.
  InFlightStep eager_step(int64_t step, const std::vector<StepBatch>& micro_batches, bool trains_rows,
                          const StepInputs& in);
  // After a step's update is queued (either path): the EMA's update gated by the verdict, and the
  // learning rates the result reports (Optimizer::add_learning_rates), both ways where they differ.
  void after_update(const StepInputs& in, InFlightStep& s);
  // The step's one host read, waited for (Note [The step's verdict on the device]): the norm, the
  // verdict and the loss into its result, the optimizers settled, the guard updated, the result's
  // learning rates picked.
  void settle(InFlightStep& s);
  // Settles the step in flight, if any, and keeps its result for collect().
  void settle_in_flight();
  // Whether the next step may be queued before the one in flight is settled; why not (empty: it may).
  bool may_issue_before_settling() const;
  std::string late_read_blocker() const;
  bool late_read_blocker_logged_ = false;
  // Throws naming `what` when a step is in flight (its host side not settled).
  void require_settled(const char* what) const;
  // The gradients the GradientReducer averages (every optimizer's reduced_tensors).
  std::vector<at::Tensor> reduced_tensors() const;

  SdxlModel& model_;
  TrainerConfig config_;
  double scaling_factor_;
  std::shared_ptr<GradientReducer> reducer_;
  NoiseSchedule schedule_;
  UNetLora lora_;
  std::vector<std::pair<std::string, at::Tensor>> unet_trainable_;  // full fine-tuning
  std::unique_ptr<PivotalTuning> pivotal_;
  // Note [One optimizer interface]: the sharded UNet's first (when sharded), then the AdamW of
  // the replicated groups (LoRA or the UNet, and the token rows).
  std::vector<std::unique_ptr<Optimizer>> optimizers_;
  bool sharded_ = false;
  std::unique_ptr<ParameterEma> ema_;  // --use_ema
  StepPhaseListener* phases_ = nullptr;
  NamedTensors named_trainable(bool copy) const;
  // The optimizers' live UNet tensors (LoRA A and B, or the trained UNet parameters): the EMA's.
  std::vector<std::pair<std::string, at::Tensor>> unet_trained() const;
  TextConditioningCache text_cache_;
  bool rows_frozen_ = false;
  // Note [The step as a CUDA graph].
  struct GraphedMicroBatch;
  struct GraphedStep;
  struct GraphSegment;
  enum class GraphRun { kWarmUp, kCapture, kReplay };
  std::map<std::vector<int64_t>, std::unique_ptr<GraphedStep>> graphs_;  // by their inputs' shapes
  std::unique_ptr<StepCapture> capture_;                                 // kCuda
  int64_t next_graph_id_ = 0;
  std::string graph_blocker_logged_;
  bool graph_eviction_logged_ = false;
  int64_t graphed_steps_ = 0, graph_replays_ = 0, graph_captures_ = 0;
  // Every optimizer reads its learning rates from the device (the fused kernel's tensor form).
  bool device_learning_rates_ = false;
  bool capturing_ = false;
  void set_up_device_learning_rates();
  void set_up_step_graph();
  // Why this step runs eagerly under --cuda_graph (empty: it can be captured).
  std::string graph_blocker(const std::vector<StepBatch>& micro_batches, bool trains_rows) const;
  InFlightStep graphed_step(int64_t step, const std::vector<StepBatch>& micro_batches, const StepInputs& in);
  // The static inputs of this step shape (`key`: the micro-batches' inputs' shapes), made like
  // `inputs` (one set per micro-batch) when new.
  GraphedStep& graphed_step_for(const std::vector<int64_t>& key, const std::vector<std::array<at::Tensor, 9>>& inputs);
  // The step's inputs (one set per micro-batch) and spike threshold into `g`'s static tensors.
  void copy_in(GraphedStep& g, const std::vector<std::array<at::Tensor, 9>>& inputs, const StepInputs& in);
  // Warm-up, capture or replay of `g`'s step, as far as it has come: its segments in order, each
  // run (run_segment), and the reduction between where there is one (reduce_between_segments).
  void run_graphed(GraphedStep& g, int64_t step, double lr_factor);
  std::vector<GraphSegment> graph_segments(GraphedStep& g, int64_t step, double lr_factor);
  void run_segment(const GraphSegment& segment, int64_t graph_id, GraphRun run, int64_t step);
  void reduce_between_segments(GraphedStep& g, GraphRun run);
  void count_graphed_run(GraphedStep& g, GraphRun run, int64_t step);
  // The device work of a step from the static inputs to the optimizer (the captured part), in
  // its segments: forward and backward of micro-batch `k`; the reduction; clipping, verdict and update.
  void graph_forward_backward(GraphedStep& g, size_t k);
  void finish_backward();
  // `norms_exchanged`: the optimizers' local norms were computed and exchanged before it.
  void graph_update(GraphedStep& g, int64_t step, double lr_factor, bool norms_exchanged);
  void drop_graphs_of(const GraphedStep& g);
  void drop_step_graphs();
  bool optimizers_communicate_in_step() const;  // Optimizer::communicates_in_step (ZeRO-1)
  BadStepGuard guard_;
  at::Device device_;
  std::optional<InFlightStep> in_flight_;
  int64_t steps_issued_before_settling_ = 0;
  std::deque<StepResult> settled_;  // settled, not collected
};

}  // namespace xltune
