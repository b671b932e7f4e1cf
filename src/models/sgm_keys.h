// Key names of the original SDXL single-file checkpoint (Stability's generative-models, "SGM")
// for our diffusers-named UNet and VAE, derived from the config (layers per block can differ
// per level), as diffusers' convert_ldm_unet_checkpoint / convert_ldm_vae_checkpoint read
// them (diffusers' scripts/convert_diffusers_to_original_sdxl.py lists the same mapping).
//   conv_in -> input_blocks.0.0; down_blocks.i.resnets.j -> input_blocks.K.0 (in_layers.0/2,
//   emb_layers.1, out_layers.0/3, skip_connection); ...attentions.j -> input_blocks.K.1;
//   downsamplers.0.conv -> input_blocks.K.0.op; mid_block -> middle_block.{0,1,2};
//   up_blocks.i -> output_blocks.K.{0,1,2}; time_embedding -> time_embed.{0,2};
//   add_embedding -> label_emb.0.{0,2}; conv_norm_out/conv_out -> out.{0,2}.
//   VAE: down_blocks -> down.i.block.j, up_blocks.i -> up.(n-1-i).block.j, mid_block ->
//   mid.{block_1,attn_1,block_2} (attention q/k/v/proj_out as 1x1 convs), conv_shortcut ->
//   nin_shortcut, conv_norm_out -> norm_out.
#pragma once

#include <map>
#include <string>

#include "models/unet_config.h"
#include "models/vae.h"

namespace xltune {

inline const char* kSingleFileUNetPrefix = "model.diffusion_model.";
inline const char* kSingleFileVaePrefix = "first_stage_model.";

// diffusers key -> SGM key (without the prefix), for every parameter of the model.
std::map<std::string, std::string> sgm_unet_keys(const UNetConfig& config);
std::map<std::string, std::string> sgm_vae_keys(const VaeConfig& config);

}  // namespace xltune
