// The SDXL UNet's config (diffusers' unet/config.json). Every field that SDXL's UNet uses is
// read, none is hard-coded, so the tiny test models and the 2.6 B-parameter UNet go through
// the same code. Fields that would need another architecture (class embeddings, dual cross
// attention, ...) must have their default: the error names the field.
#pragma once

#include <string>
#include <vector>

namespace xltune {

struct UNetConfig {
  int64_t in_channels = 4;
  int64_t out_channels = 4;
  std::vector<int64_t> block_out_channels;
  std::vector<std::string> down_block_types;  // DownBlock2D | CrossAttnDownBlock2D
  std::vector<std::string> up_block_types;    // UpBlock2D | CrossAttnUpBlock2D
  // Per down block (the up path uses them reversed, as diffusers does).
  std::vector<int64_t> layers_per_block;
  std::vector<int64_t> num_attention_heads;  // diffusers' misnamed "attention_head_dim"
  std::vector<int64_t> transformer_layers_per_block;
  std::vector<int64_t> reverse_transformer_layers_per_block;  // per up block
  std::vector<int64_t> cross_attention_dim;
  bool use_linear_projection = true;
  bool text_time = false;  // addition_embed_type == "text_time"
  int64_t addition_time_embed_dim = 256;
  int64_t projection_class_embeddings_input_dim = 2816;
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  bool flip_sin_to_cos = true;
  double freq_shift = 0;
  int64_t sample_size = 128;

  int64_t time_embed_dim() const { return block_out_channels.at(0) * 4; }
  // Width of the pooled text embedding that text_time conditioning expects.
  int64_t text_embeds_dim() const { return projection_class_embeddings_input_dim - 6 * addition_time_embed_dim; }

  static UNetConfig from_json_file(const std::string& path);
  static UNetConfig from_json_text(const std::string& text, const std::string& source);
};

}  // namespace xltune
