// Making every rank's gradients the average over ranks before the optimizer step.
//
// The training step calls prepare() with the trainable tensors (and again whenever that set
// changes, as at the pivot of pivotal tuning), before_backward() before each backward(), and
// finish() after it. AfterBackwardReducer (here) all-reduces each gradient after backward has
// returned; BucketedReducer (bucketed_reducer.h, Note [Gradient buckets]) overlaps the
// all-reduce with backward behind the same calls. With a world of one they do nothing.
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
  // After backward: each trainable tensor's .grad() holds the average over ranks.
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
