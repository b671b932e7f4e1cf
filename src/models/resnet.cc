#include "models/resnet.h"

#include <ATen/ATen.h>

namespace xltune {

ResnetBlock2DImpl::ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t temb_channels, int64_t groups,
                                     double eps, const at::TensorOptions& o) {
  norm1 = register_module("norm1", nn::GroupNorm(groups, in_channels, eps, o));
  conv1 = register_module("conv1", nn::Conv2d(in_channels, out_channels, 3, 1, 1, o));
  if (temb_channels > 0) time_emb_proj = register_module("time_emb_proj", nn::Linear(temb_channels, out_channels, true, o));
  norm2 = register_module("norm2", nn::GroupNorm(groups, out_channels, eps, o));
  conv2 = register_module("conv2", nn::Conv2d(out_channels, out_channels, 3, 1, 1, o));
  if (in_channels != out_channels) conv_shortcut = register_module("conv_shortcut", nn::Conv2d(in_channels, out_channels, 1, 1, 0, o));
}

at::Tensor ResnetBlock2DImpl::forward(const at::Tensor& x, const at::Tensor& temb) {
  at::Tensor h = conv1(at::silu(norm1(x)));
  if (time_emb_proj && temb.defined()) h = h + time_emb_proj(at::silu(temb)).unsqueeze(-1).unsqueeze(-1);
  h = conv2(at::silu(norm2(h)));
  return (conv_shortcut ? conv_shortcut(x) : x) + h;
}

Downsample2DImpl::Downsample2DImpl(int64_t channels, int64_t padding_, const at::TensorOptions& o) : padding(padding_) {
  conv = register_module("conv", nn::Conv2d(channels, channels, 3, 2, padding, o));
}

at::Tensor Downsample2DImpl::forward(const at::Tensor& x) {
  if (padding == 0) return conv(at::constant_pad_nd(x, {0, 1, 0, 1}, 0));
  return conv(x);
}

Upsample2DImpl::Upsample2DImpl(int64_t channels, const at::TensorOptions& o) {
  conv = register_module("conv", nn::Conv2d(channels, channels, 3, 1, 1, o));
}

at::Tensor Upsample2DImpl::forward(const at::Tensor& x, at::IntArrayRef size) {
  // bf16 nearest-neighbour upsampling is exact, so no fp32 round trip is needed here.
  at::Tensor up = size.empty() ? at::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2})
                               : at::upsample_nearest2d(x, size);
  return conv(up);
}

}  // namespace xltune
