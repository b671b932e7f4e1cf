#include "train/step_read.h"

#include <ATen/ATen.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include "core/check.h"

namespace xltune {

StepRead StepRead::enqueue(const at::Tensor& grad_norm, const at::Tensor& apply, const at::Tensor& loss) {
  at::NoGradGuard no_grad;
  // A new tensor: the graphs' outputs stay where they are and the next replay rewrites them.
  const at::Tensor values = at::stack({grad_norm.to(at::kDouble), apply.to(at::kDouble), loss.to(at::kDouble)});
  StepRead read;
  const at::Device device = values.device();
  if (device.is_cpu()) {
    read.host_ = values;
    return read;
  }
  // Pinned: the copy is queued and the host goes on (pageable memory would make it wait).
  read.host_ = at::empty({3}, at::TensorOptions().dtype(at::kDouble).pinned_memory(true));
  read.host_.copy_(values, /*non_blocking=*/true);
  const c10::impl::VirtualGuardImpl guard(device.type());
  read.copied_ = std::make_shared<c10::Event>(device.type());
  read.copied_->record(guard.getStream(device));
  return read;
}

std::array<double, 3> StepRead::wait() const {
  XLTUNE_CHECK(host_.defined(), "trainer: a step's read waited for before it was queued");
  if (copied_) copied_->synchronize();
  const double* v = host_.data_ptr<double>();
  return {v[0], v[1], v[2]};
}

}  // namespace xltune
