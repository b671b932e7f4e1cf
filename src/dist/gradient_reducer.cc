#include "dist/gradient_reducer.h"

#include <ATen/ATen.h>

#include "dist/communicator.h"

namespace xltune {

void AfterBackwardReducer::finish() {
  const int world = comm_.size();
  if (world == 1) return;
  for (auto& t : trainable_) {
    at::Tensor g = t.mutable_grad();
    // A tensor that took no part in this step's graph gets zeros, so every rank still makes
    // the same sequence of collectives.
    if (!g.defined()) {
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
