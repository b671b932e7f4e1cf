#include "models/unet_config.h"

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/config_reader.h"

namespace xltune {

UNetConfig UNetConfig::from_json_file(const std::string& path) { return from_json_text(read_file(path), path); }

UNetConfig UNetConfig::from_json_text(const std::string& text, const std::string& source) {
  ConfigReader r(text, source);
  UNetConfig c;
  c.in_channels = r.integer("in_channels", 4);
  c.out_channels = r.integer("out_channels", 4);
  c.block_out_channels = r.positive_integers("block_out_channels", {});
  const size_t n = c.block_out_channels.size();
  c.down_block_types = r.strings("down_block_types");
  c.up_block_types = r.strings("up_block_types");
  XLTUNE_CHECK(c.down_block_types.size() == n && c.up_block_types.size() == n, source, ": ", n,
               " block_out_channels but ", c.down_block_types.size(), " down and ", c.up_block_types.size(),
               " up block types");
  for (const auto& t : c.down_block_types)
    XLTUNE_CHECK(t == "DownBlock2D" || t == "CrossAttnDownBlock2D", source, ": down block type '", t,
                 "': expected DownBlock2D or CrossAttnDownBlock2D");
  for (const auto& t : c.up_block_types)
    XLTUNE_CHECK(t == "UpBlock2D" || t == "CrossAttnUpBlock2D", source, ": up block type '", t,
                 "': expected UpBlock2D or CrossAttnUpBlock2D");
  XLTUNE_CHECK(r.string("mid_block_type", "UNetMidBlock2DCrossAttn") == "UNetMidBlock2DCrossAttn", source,
               ": \"mid_block_type\": expected UNetMidBlock2DCrossAttn");

  c.layers_per_block = r.per_block("layers_per_block", n, 2);
  // diffusers: num_attention_heads = num_attention_heads or attention_head_dim (a naming
  // mistake kept for compatibility: SDXL's "attention_head_dim" [5, 10, 20] counts heads).
  c.num_attention_heads = r.has("num_attention_heads") ? r.per_block("num_attention_heads", n, 8)
                                                       : r.per_block("attention_head_dim", n, 8);
  c.transformer_layers_per_block = r.per_block("transformer_layers_per_block", n, 1);
  if (r.has("reverse_transformer_layers_per_block")) {
    c.reverse_transformer_layers_per_block = r.per_block("reverse_transformer_layers_per_block", n, 1);
  } else {
    c.reverse_transformer_layers_per_block.assign(c.transformer_layers_per_block.rbegin(),
                                                  c.transformer_layers_per_block.rend());
  }
  c.cross_attention_dim = r.per_block("cross_attention_dim", n, 1280);
  c.use_linear_projection = r.boolean("use_linear_projection", false);
  const std::string add = r.string("addition_embed_type", "");
  XLTUNE_CHECK(add.empty() || add == "text_time", source, ": \"addition_embed_type\" '", add,
               "': expected text_time (SDXL) or null");
  c.text_time = add == "text_time";
  c.addition_time_embed_dim = r.integer("addition_time_embed_dim", 256);
  c.projection_class_embeddings_input_dim = r.integer("projection_class_embeddings_input_dim", 0);
  if (c.text_time) {
    XLTUNE_CHECK(c.text_embeds_dim() > 0, source, ": projection_class_embeddings_input_dim ",
                 c.projection_class_embeddings_input_dim, " leaves no room for 6 time ids of ",
                 c.addition_time_embed_dim);
  }
  c.norm_num_groups = r.integer("norm_num_groups", 32);
  c.norm_eps = r.number("norm_eps", 1e-5);
  c.flip_sin_to_cos = r.boolean("flip_sin_to_cos", true);
  c.freq_shift = r.number("freq_shift", 0);
  c.sample_size = r.integer("sample_size", 128);
  for (int64_t ch : c.block_out_channels)
    XLTUNE_CHECK(ch % c.norm_num_groups == 0, source, ": block channels ", ch, " are not a multiple of norm_num_groups ",
                 c.norm_num_groups);
  for (size_t i = 0; i < n; ++i)
    XLTUNE_CHECK(c.block_out_channels[i] % c.num_attention_heads[i] == 0, source, ": block ", i, " has ",
                 c.block_out_channels[i], " channels, not a multiple of its ", c.num_attention_heads[i], " heads");

  // What SDXL's UNet does not use must be left at diffusers' defaults.
  const char* other = "other UNet architectures are not implemented";
  r.require_default("class_embed_type", nullptr, other);
  r.require_default("encoder_hid_dim", nullptr, other);
  r.require_default("time_cond_proj_dim", nullptr, other);
  r.require_default("dual_cross_attention", false, other);
  r.require_default("only_cross_attention", false, other);
  r.require_default("resnet_time_scale_shift", "default", other);
  r.require_default("time_embedding_type", "positional", other);
  r.require_default("act_fn", "silu", other);
  r.require_default("attention_type", "default", other);
  r.require_default("conv_in_kernel", 3, other);
  r.require_default("conv_out_kernel", 3, other);
  r.require_default("center_input_sample", false, other);
  r.require_default("resnet_skip_time_act", false, other);
  r.require_default("resnet_out_scale_factor", 1.0, other);
  r.require_default("time_embedding_act_fn", nullptr, other);
  r.require_default("timestep_post_act", nullptr, other);
  r.require_default("mid_block_scale_factor", 1, other);
  r.require_default("downsample_padding", 1, other);
  // SD 2.x's fp32 attention upcast; SDXL's configs have null or false.
  r.require_default("upcast_attention", false, "attention in fp32 (SD 2.x) is not implemented");
  return c;
}

}  // namespace xltune
