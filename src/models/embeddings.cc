#include "models/embeddings.h"

#include <ATen/ATen.h>

#include <cmath>

namespace xltune {

at::Tensor timestep_sinusoid(const at::Tensor& t, int64_t dim, bool flip_sin_to_cos, double freq_shift) {
  const int64_t half = dim / 2;
  at::Tensor exponent = at::arange(half, t.options().dtype(at::kFloat)) * (-std::log(10000.0)) /
                        (static_cast<double>(half) - freq_shift);
  at::Tensor args = t.to(at::kFloat).unsqueeze(1) * at::exp(exponent).unsqueeze(0);
  at::Tensor emb = flip_sin_to_cos ? at::cat({at::cos(args), at::sin(args)}, -1) : at::cat({at::sin(args), at::cos(args)}, -1);
  if (dim % 2 == 1) emb = at::constant_pad_nd(emb, {0, 1});
  return emb;
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(int64_t in_dim, int64_t out_dim, const at::TensorOptions& o) {
  linear_1 = register_module("linear_1", nn::Linear(in_dim, out_dim, true, o));
  linear_2 = register_module("linear_2", nn::Linear(out_dim, out_dim, true, o));
}

at::Tensor TimestepEmbeddingImpl::forward(const at::Tensor& x) { return linear_2(at::silu(linear_1(x))); }

}  // namespace xltune
