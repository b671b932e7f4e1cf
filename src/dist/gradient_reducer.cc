#include "dist/gradient_reducer.h"

#include <ATen/ATen.h>

#include "dist/communicator.h"

namespace xltune {

bool AfterBackwardReducer::communicates() const { return comm_.size() > 1; }

void AfterBackwardReducer::finish() {
  const int world = comm_.size();
  if (world == 1 || trainable_.empty()) return;
  at::NoGradGuard no_grad;
  // Note [Tensors without a gradient]: which tensors got a gradient on any rank.
  std::vector<float> got(trainable_.size());
  for (size_t i = 0; i < trainable_.size(); ++i) got[i] = trainable_[i].grad().defined() ? 1.f : 0.f;
  at::Tensor anywhere = at::tensor(got, at::kFloat);
  if (comm_.device_type() != c10::DeviceType::CPU) anywhere = anywhere.to(trainable_.front().device());
  comm_.all_reduce_sum(anywhere);
  anywhere = anywhere.cpu();
  const float* any = anywhere.data_ptr<float>();
  for (size_t i = 0; i < trainable_.size(); ++i) {
    at::Tensor& t = trainable_[i];
    if (any[i] == 0) continue;  // no rank: stays undefined everywhere, the same sequence of collectives
    at::Tensor g = t.mutable_grad();
    if (!g.defined()) {  // this rank's samples missed it: zeros in the mean
      g = at::zeros_like(t);
      t.mutable_grad() = g;
    }
    if (!g.is_contiguous()) {
      g = g.contiguous();
      t.mutable_grad() = g;
    }
    comm_.all_reduce_sum(g);
    g.div_(world);
  }
}

}  // namespace xltune
