// Timestep and size conditioning of the UNet (diffusers embeddings.py): the sinusoid of a
// timestep (or of each of SDXL's six size/crop ids) and the two-layer MLP after it.
#pragma once

#include "core/layers.h"

namespace xltune {

// diffusers' get_timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift, scale=1,
// max_period=10000): [sin | cos] of t · exp(-ln(10000) · i / (dim/2 - shift)), flipped to
// [cos | sin] when asked; fp32.
at::Tensor timestep_sinusoid(const at::Tensor& t, int64_t dim, bool flip_sin_to_cos, double freq_shift);

// linear_1 -> SiLU -> linear_2 (keys "linear_1", "linear_2").
class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  TimestepEmbeddingImpl(int64_t in_dim, int64_t out_dim, const at::TensorOptions& o);
  at::Tensor forward(const at::Tensor& x);
  nn::Linear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

}  // namespace xltune
