#include "models/vae.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/container/modulelist.h>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/config_reader.h"

namespace xltune {

namespace {
constexpr double kVaeEps = 1e-6;  // diffusers' Encoder/Decoder use resnet_eps 1e-6 throughout
}  // namespace

VaeConfig VaeConfig::from_json_file(const std::string& path) { return from_json_text(read_file(path), path); }

VaeConfig VaeConfig::from_json_text(const std::string& text, const std::string& source) {
  ConfigReader r(text, source);
  VaeConfig c;
  c.in_channels = r.integer("in_channels", 3);
  c.out_channels = r.integer("out_channels", 3);
  c.latent_channels = r.integer("latent_channels", 4);
  c.block_out_channels = r.positive_integers("block_out_channels", c.block_out_channels);
  c.layers_per_block = r.integer("layers_per_block", 2);
  c.norm_num_groups = r.integer("norm_num_groups", 32);
  c.scaling_factor = r.number("scaling_factor", 0.18215);
  c.shift_factor = r.number("shift_factor", 0);
  c.use_quant_conv = r.boolean("use_quant_conv", true);
  c.use_post_quant_conv = r.boolean("use_post_quant_conv", true);
  c.mid_block_add_attention = r.boolean("mid_block_add_attention", true);
  c.force_upcast = r.boolean("force_upcast", true);
  const size_t n = c.block_out_channels.size();
  if (r.has("down_block_types")) {
    auto types = r.strings("down_block_types");
    XLTUNE_CHECK(types.size() == n, source, ": ", types.size(), " down block types for ", n, " levels");
    for (const auto& t : types)
      XLTUNE_CHECK(t == "DownEncoderBlock2D", source, ": down block type '", t, "': expected DownEncoderBlock2D");
  }
  if (r.has("up_block_types")) {
    auto types = r.strings("up_block_types");
    XLTUNE_CHECK(types.size() == n, source, ": ", types.size(), " up block types for ", n, " levels");
    for (const auto& t : types)
      XLTUNE_CHECK(t == "UpDecoderBlock2D", source, ": up block type '", t, "': expected UpDecoderBlock2D");
  }
  r.require_default("act_fn", "silu", "other VAE architectures are not implemented");
  for (int64_t ch : c.block_out_channels)
    XLTUNE_CHECK(ch % c.norm_num_groups == 0, source, ": channels ", ch, " are not a multiple of norm_num_groups ",
                 c.norm_num_groups);
  return c;
}

at::Tensor LatentDistribution::sample(const at::Tensor& noise) const { return mean + at::exp(0.5 * logvar) * noise; }

VaeCoderImpl::VaeCoderImpl(const VaeConfig& c, bool encoder, const at::TensorOptions& o) : is_encoder(encoder) {
  const auto& ch = c.block_out_channels;
  const size_t n = ch.size();
  const int64_t g = c.norm_num_groups;
  auto make_mid = [&] {
    VaeBlock mid;
    mid->resnets.push_back(ResnetBlock2D(ch[n - 1], ch[n - 1], 0, g, kVaeEps, o));
    if (c.mid_block_add_attention) mid->attentions.push_back(VaeAttention(ch[n - 1], g, kVaeEps, o));
    mid->resnets.push_back(ResnetBlock2D(ch[n - 1], ch[n - 1], 0, g, kVaeEps, o));
    nn::register_list(*mid, "attentions", mid->attentions);
    nn::register_list(*mid, "resnets", mid->resnets);
    return mid;
  };
  if (encoder) {
    conv_in = register_module("conv_in", nn::Conv2d(c.in_channels, ch[0], 3, 1, 1, o));
    int64_t out_ch = ch[0];
    for (size_t i = 0; i < n; ++i) {
      const int64_t in_ch = out_ch;
      out_ch = ch[i];
      VaeBlock block;
      for (int64_t j = 0; j < c.layers_per_block; ++j)
        block->resnets.push_back(ResnetBlock2D(j == 0 ? in_ch : out_ch, out_ch, 0, g, kVaeEps, o));
      nn::register_list(*block, "resnets", block->resnets);
      if (i + 1 < n) {
        block->downsampler = Downsample2D(out_ch, 0, o);
        nn::register_list(*block, "downsamplers", std::vector<Downsample2D>{block->downsampler});
      }
      blocks.push_back(block);
    }
    nn::register_list(*this, "down_blocks", blocks);
    mid_block = register_module("mid_block", make_mid());
    conv_norm_out = register_module("conv_norm_out", nn::GroupNorm(g, ch[n - 1], kVaeEps, o));
    conv_out = register_module("conv_out", nn::Conv2d(ch[n - 1], 2 * c.latent_channels, 3, 1, 1, o));
  } else {
    conv_in = register_module("conv_in", nn::Conv2d(c.latent_channels, ch[n - 1], 3, 1, 1, o));
    mid_block = register_module("mid_block", make_mid());
    int64_t out_ch = ch[n - 1];
    for (size_t i = 0; i < n; ++i) {
      const int64_t prev = out_ch;
      out_ch = ch[n - 1 - i];
      VaeBlock block;
      for (int64_t j = 0; j < c.layers_per_block + 1; ++j)
        block->resnets.push_back(ResnetBlock2D(j == 0 ? prev : out_ch, out_ch, 0, g, kVaeEps, o));
      nn::register_list(*block, "resnets", block->resnets);
      if (i + 1 < n) {
        block->upsampler = Upsample2D(out_ch, o);
        nn::register_list(*block, "upsamplers", std::vector<Upsample2D>{block->upsampler});
      }
      blocks.push_back(block);
    }
    nn::register_list(*this, "up_blocks", blocks);
    conv_norm_out = register_module("conv_norm_out", nn::GroupNorm(g, ch[0], kVaeEps, o));
    conv_out = register_module("conv_out", nn::Conv2d(ch[0], c.out_channels, 3, 1, 1, o));
  }
}

at::Tensor VaeCoderImpl::forward(const at::Tensor& x) {
  at::Tensor h = conv_in(x);
  auto run_mid = [&] {
    h = mid_block->resnets[0]->forward(h);
    if (!mid_block->attentions.empty()) h = mid_block->attentions[0]->forward(h);
    h = mid_block->resnets[1]->forward(h);
  };
  if (!is_encoder) run_mid();
  for (auto& block : blocks) {
    for (auto& r : block->resnets) h = r->forward(h);
    if (block->downsampler) h = block->downsampler(h);
    if (block->upsampler) h = block->upsampler(h);
  }
  if (is_encoder) run_mid();
  return conv_out(at::silu(conv_norm_out(h)));
}

VaeImpl::VaeImpl(const VaeConfig& c, const at::TensorOptions& o) : config_(c) {
  encoder = register_module("encoder", VaeCoder(c, true, o));
  decoder = register_module("decoder", VaeCoder(c, false, o));
  if (c.use_quant_conv)
    quant_conv = register_module("quant_conv", nn::Conv2d(2 * c.latent_channels, 2 * c.latent_channels, 1, 1, 0, o));
  if (c.use_post_quant_conv)
    post_quant_conv = register_module("post_quant_conv", nn::Conv2d(c.latent_channels, c.latent_channels, 1, 1, 0, o));
}

LatentDistribution VaeImpl::encode(const at::Tensor& image) {
  XLTUNE_CHECK(image.dim() == 4 && image.size(1) == config_.in_channels, "VAE: expected images [B, ",
               config_.in_channels, ", H, W], got ", image.sizes());
  at::Tensor moments = encoder(image);
  if (quant_conv) moments = quant_conv(moments);
  std::vector<at::Tensor> parts = moments.chunk(2, 1);
  return LatentDistribution{parts[0], parts[1].clamp(-30.0, 20.0)};
}

at::Tensor VaeImpl::decode(const at::Tensor& latents) {
  XLTUNE_CHECK(latents.dim() == 4 && latents.size(1) == config_.latent_channels, "VAE: expected latents [B, ",
               config_.latent_channels, ", h, w], got ", latents.sizes());
  return decoder(post_quant_conv ? post_quant_conv(latents) : latents);
}

}  // namespace xltune
