// ResnetBlock2D, Downsample2D and Upsample2D as diffusers builds them (resnet.py,
// downsampling.py, upsampling.py), for the UNet and the VAE.
#pragma once

#include "core/layers.h"

namespace xltune {

// GN -> SiLU -> conv1 (+ time_emb_proj(SiLU(temb))) -> GN -> SiLU -> conv2, plus a 1x1
// conv_shortcut when the channel count changes. temb_channels 0: no time embedding (VAE).
class ResnetBlock2DImpl : public torch::nn::Module {
 public:
  ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t temb_channels, int64_t groups, double eps,
                    const at::TensorOptions& o);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb = {});
  nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
  nn::Linear time_emb_proj{nullptr};
};
TORCH_MODULE(ResnetBlock2D);

// 3x3 stride-2 conv; padding 1 (UNet), or 0 after padding right and bottom by one (VAE).
class Downsample2DImpl : public torch::nn::Module {
 public:
  Downsample2DImpl(int64_t channels, int64_t padding, const at::TensorOptions& o);
  at::Tensor forward(const at::Tensor& x);
  nn::Conv2d conv{nullptr};
  int64_t padding;
};
TORCH_MODULE(Downsample2D);

// Nearest-neighbour x2 (or to `size`, the matching skip connection's) then a 3x3 conv.
class Upsample2DImpl : public torch::nn::Module {
 public:
  Upsample2DImpl(int64_t channels, const at::TensorOptions& o);
  at::Tensor forward(const at::Tensor& x, at::IntArrayRef size = {});
  nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample2D);

}  // namespace xltune
