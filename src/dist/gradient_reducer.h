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
#pragma once

#include <ATen/core/Tensor.h>

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
};

// One all-reduce per gradient after backward: correct for any communicator, no overlap.
class AfterBackwardReducer final : public GradientReducer {
 public:
  explicit AfterBackwardReducer(Communicator& comm) : comm_(comm) {}
  void prepare(const std::vector<at::Tensor>& trainable) override { trainable_ = trainable; }
  void finish() override;

 private:
  Communicator& comm_;
  std::vector<at::Tensor> trainable_;
};

}  // namespace xltune
