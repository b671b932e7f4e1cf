// Gradient checkpointing ("activation recomputation"; Note [Gradient checkpointing] in
// docs/design-notes.md): libtorch's C++ API has no
// torch.utils.checkpoint, so this is ours. recompute_in_backward(fn, a, b) runs fn without
// keeping its intermediate activations; backward runs fn again, with gradients, and
// back-propagates through that second run. Memory falls from all activations of fn to its
// inputs; compute rises by one forward of fn.
//
// fn must be deterministic given its inputs (no dropout: xltune's blocks have none) and may
// use any parameters of its modules: their gradients accumulate in the second run, as they
// would have in the first. Inputs that do not require gradients get none.
#pragma once

#include <functional>

namespace at {
class Tensor;
}

namespace xltune {

// Blocks take a hidden state and one conditioning tensor (time embedding or text context).
using TensorFn = std::function<at::Tensor(const at::Tensor&, const at::Tensor&)>;

// fn(a, b), recomputed in backward. With gradients off (inference) it is just fn(a, b).
at::Tensor recompute_in_backward(const TensorFn& fn, const at::Tensor& a, const at::Tensor& b);

}  // namespace xltune
