// A step's outputs on their way to the host: the norm, the verdict and the loss of Note [The
// step's verdict on the device] (train/trainer.h), copied after the step's work is queued and
// read when the host needs them (Note [Reading a step one step late]).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Event.h>

#include <array>
#include <memory>

namespace xltune {

class StepRead {
 public:
  StepRead() = default;
  // Queues the copy of three 0-dim tensors on one device (the norm, the verdict, the loss) to the
  // host, after everything queued so far on the current stream, and returns without waiting: on a
  // CUDA device into pinned memory with an event behind it. On the CPU the values are copied now.
  static StepRead enqueue(const at::Tensor& grad_norm, const at::Tensor& apply, const at::Tensor& loss);
  // Waits for the copy (long done when the read is a step late) and returns {norm, apply, loss}.
  std::array<double, 3> wait() const;

 private:
  at::Tensor host_;  // float64 [3]
  std::shared_ptr<c10::Event> copied_;  // CUDA: recorded after the copy; null on the CPU
};

}  // namespace xltune
