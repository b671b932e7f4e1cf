// Making every rank's gradients the average over ranks before the optimizer step.
//
// The training step calls prepare() with the trainable tensors (and again whenever that set
// changes, as at the pivot of pivotal tuning), before_backward() before each backward(), and
// finish() after it. AfterBackwardReducer (here) all-reduces each gradient after backward has
// returned; BucketedReducer (bucketed_reducer.h, Note [Gradient buckets]) overlaps the
// all-reduce with backward behind the same calls. With a world of one they do nothing.
//
// Note [Tensors without a gradient]
// A trainable tensor that took no part in a step's graph (on a rank: its samples did not reach
// it) must mean the same whatever the world size: one rank with the whole batch would leave its
// gradient undefined when no sample reached it, and AdamW skips such a tensor (no decay, no step
// counted). So the reducers agree over the ranks which tensors got a gradient anywhere: a tensor
// that got one on some rank gets the average (zeros from the ranks it missed, as the mean over
// the global batch has them), and one that got none anywhere is left undefined on every rank.
// (The reducers used to hand such a tensor zeros, so AdamW decayed it on N ranks and skipped it
// on one: the GPU-readiness review's R5b.) The flags travel in the same collectives as the
// gradients (the bucketed reducer) or in one small all-reduce (the after-backward one).
//
// Note [bf16 gradient reduction]
// --grad_reduce_dtype bf16 halves the bytes of the gradient collectives (the bucketed all-reduce,
// ZeRO-1's reduce-scatter); fp32 is exact up to the order of the sums.
// - What travels: when a bucket is full, its fp32 gradients are divided by the world size W (in
//   fp32) and cast once into a bf16 buffer, made for the collective and freed when its result is
//   copied back into the fp32 gradients (.grad and the buckets stay fp32; AdamW and the clipping
//   see fp32 gradients whose values are bf16 numbers). The ranks' shares g_r / W are summed, not
//   the g_r, as DDP's bf16_compress_hook does: the sum is then the mean itself, with nothing to
//   divide (and round) after it, and the values on the wire stay the size of the gradients (bf16
//   has fp32's exponent range, so a sum of W gradients would not overflow either, as fp16's
//   could). Dividing in fp32, before the one rounding to bf16, adds no rounding even where 1/W is
//   not a power of two. Only a share below 2^-126 (fp32's and bf16's smallest normal) loses bits.
// - Where the sum is formed: NCCL sums bf16 (Communicator::sums_bf16(); each add on the ring
//   rounds its sum to bf16). MPI has no bf16 type, and the thread group refuses bf16 sums as MPI does, so
//   there start_all_reduce_sum_bf16 / start_reduce_scatter_sum_bf16 (communicator.h) sum an fp32
//   copy of the bf16 buffer and round the result to bf16: the same numbers as NCCL's for 2 ranks
//   (one rounding of the same exact sum), within a bf16 rounding of the sum per extra rank
//   otherwise (NCCL rounds each partial sum); no bandwidth is saved, the casts cost a little.
// - Error: each share rounds once (2^-8 of it) and each sum once, so the mean is within
//   2^-8 sum_r |g_r| of the fp32 mean (tests/dist/bucketed_reducer_test.cc). Adam divides by the
//   root mean square of the gradient, so a relative error of 2^-8 moves the step by about as much,
//   except where the ranks' gradients nearly cancel; measured: bench/grad_reduce.py.
// - Default (grad_reduce_dtype_for, job/trainer_setup.h): bf16 for full fine-tuning on NCCL, where
//   its 10 GB of fp32 gradients per step limit scaling (bench/scaling_model.py); fp32 for LoRA
//   (186 MB, hidden behind backward already) and on MPI (no bytes saved). The option works on MPI
//   too (tests/cli/mpi_train_test.sh). A world of one reduces nothing: run_config.json says "none".
// - ZeRO-1's all-gather of the updated weights in bf16 (--zero_gather_dtype, Note [Sharded
//   optimizer state]) is the other half: fp32 masters of each rank's own shard, bf16-valued
//   working weights, identical on every rank.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace xltune {

class Communicator;

class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  virtual void prepare(const std::vector<at::Tensor>& trainable) = 0;
  // Before backward: where gradients will be accumulated (the bucketed reducer points every
  // .grad at its bucket). Gradients must be undefined (cleared) when it is called.
  virtual void before_backward() {}
  // Gradient accumulation (Note [Gradient accumulation]): false makes the coming backward()
  // only accumulate into the gradients, with no communication; true (the default) makes it the
  // step's last, whose hooks reduce what every micro-batch accumulated. before_backward() comes
  // once per step, before the first micro-batch; finish() once, after the last.
  virtual void set_gradient_sync(bool sync) { (void)sync; }
  // After backward: each trainable tensor's .grad() holds the average over ranks, or is
  // undefined when the tensor got a gradient on no rank (Note [Tensors without a gradient]).
  virtual void finish() = 0;
  // Whether finish() (or backward's hooks) exchange anything with other ranks: a step whose
  // reducer does is captured in two segments, finish() running between them (Note [The step as a
  // CUDA graph], train/trainer.h).
  virtual bool communicates() const = 0;

  // Note [The step as a CUDA graph]: why backward cannot be captured now with this reducer's
  // finish() run eagerly after it (empty: it can). The captured backward must run with the
  // gradient sync off (set_gradient_sync(false): its hooks only note which tensors it reached)
  // into gradients whose addresses do not change between steps.
  virtual std::string capture_blocker() const { return ""; }
  // Which trainable tensors (in prepare()'s order) this rank's last backward reached; empty where
  // the reducer does not track it.
  virtual std::vector<bool> backward_footprint() const { return {}; }
  // A replayed backward (whose hooks do not run) reached the tensors of `footprint`, the
  // backward_footprint() its capture left: as if its hooks had fired with the sync off.
  virtual void replayed_backward(const std::vector<bool>& footprint) { (void)footprint; }
};

// One all-reduce per gradient after backward: correct for any communicator, no overlap.
class AfterBackwardReducer final : public GradientReducer {
 public:
  explicit AfterBackwardReducer(Communicator& comm) : comm_(comm) {}
  void prepare(const std::vector<at::Tensor>& trainable) override { trainable_ = trainable; }
  void finish() override;
  bool communicates() const override;
  // Its all-reduce works on .grad as backward leaves it: memory a captured backward allocates
  // anew (and a replay's is nobody's .grad), so with other ranks there is nothing to hand it.
  std::string capture_blocker() const override {
    return communicates() ? "the after-backward reducer reduces .grad, which a replayed backward does not set" : "";
  }

 private:
  Communicator& comm_;
  std::vector<at::Tensor> trainable_;
};

}  // namespace xltune
