// SDXL's VAE (diffusers' AutoencoderKL), built from vae/config.json with diffusers' keys
// (encoder.{conv_in, down_blocks.i.{resnets,downsamplers}, mid_block, conv_norm_out,
// conv_out}, quant_conv, post_quant_conv, decoder.{conv_in, mid_block, up_blocks.i, ...}).
// encode() gives the latent distribution (mean, log-variance clamped to [-30, 20]); latents
// for training are sample(noise) * scaling_factor. Works with the fp16-fix weights too (same
// keys and shapes).
#pragma once

#include <vector>

#include "core/layers.h"
#include "models/attention.h"
#include "models/resnet.h"

namespace xltune {

struct VaeConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t latent_channels = 4;
  std::vector<int64_t> block_out_channels{128, 256, 512, 512};
  int64_t layers_per_block = 2;
  int64_t norm_num_groups = 32;
  double scaling_factor = 0.18215;  // diffusers' default when the file has none; SDXL's says 0.13025
  double shift_factor = 0;  // absent (null) for SDXL
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;
  bool mid_block_add_attention = true;
  bool force_upcast = true;

  static VaeConfig from_json_file(const std::string& path);
  static VaeConfig from_json_text(const std::string& text, const std::string& source);
};

struct LatentDistribution {
  at::Tensor mean, logvar;
  // mean + exp(logvar / 2) * noise
  at::Tensor sample(const at::Tensor& noise) const;
};

class VaeBlockImpl : public torch::nn::Module {
 public:
  std::vector<ResnetBlock2D> resnets;
  std::vector<VaeAttention> attentions;
  Downsample2D downsampler{nullptr};
  Upsample2D upsampler{nullptr};
};
TORCH_MODULE(VaeBlock);

// The encoder or the decoder (they share a layout: conv_in, blocks, mid_block, norm, conv_out).
class VaeCoderImpl : public torch::nn::Module {
 public:
  VaeCoderImpl(const VaeConfig& c, bool encoder, const at::TensorOptions& o);
  at::Tensor forward(const at::Tensor& x);
  nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  std::vector<VaeBlock> blocks;
  VaeBlock mid_block{nullptr};
  nn::GroupNorm conv_norm_out{nullptr};
  bool is_encoder;
};
TORCH_MODULE(VaeCoder);

class VaeImpl : public torch::nn::Module {
 public:
  VaeImpl(const VaeConfig& config, const at::TensorOptions& options);
  // image [B, 3, H, W] in [-1, 1].
  LatentDistribution encode(const at::Tensor& image);
  // latents [B, 4, h, w] (unscaled: divide training latents by scaling_factor first).
  at::Tensor decode(const at::Tensor& latents);
  const VaeConfig& config() const { return config_; }

  VaeCoder encoder{nullptr}, decoder{nullptr};
  nn::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};

 private:
  VaeConfig config_;
};
TORCH_MODULE(Vae);

}  // namespace xltune
