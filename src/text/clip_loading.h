// Loading the SDXL text encoders from the files people have:
//   - a component folder (text_encoder/, text_encoder_2/): config.json + model.safetensors
//     (fp32 or the fp16 variant, single or sharded); keys with or without "text_model.";
//   - an SDXL single-file checkpoint (sd_xl_base_1.0.safetensors): CLIP-L under
//     "conditioner.embedders.0.transformer." (transformers keys) and OpenCLIP-bigG under
//     "conditioner.embedders.1.model." (open_clip keys: fused q/k/v, x @ P projection).
// Weights go straight into the target dtype and device, one tensor at a time.
#pragma once

#include <optional>
#include <string>

#include "core/state_dict.h"
#include "text/clip_text_model.h"

namespace xltune {

ClipTextModel load_clip_text_model(const std::string& dir, const ModelLoadOptions& load = {});

// The prefixes of the single-file layout.
inline const char* kSingleFileTe1Prefix = "conditioner.embedders.0.transformer.";
inline const char* kSingleFileTe2Prefix = "conditioner.embedders.1.model.";

struct SdxlTextEncoders {
  ClipTextModel te1{nullptr};
  ClipTextModel te2{nullptr};
};

// Configs are inferred from the tensor shapes (64-channel heads, as CLIP-L and bigG have)
// unless given.
SdxlTextEncoders load_sdxl_text_encoders_from_single_file(const std::string& path, const ModelLoadOptions& load = {},
                                                          std::optional<ClipTextConfig> te1_config = std::nullopt,
                                                          std::optional<ClipTextConfig> te2_config = std::nullopt);

// A text encoder's config from its tensor shapes (transformers keys): 64-channel heads, as
// CLIP-L and OpenCLIP-bigG have; gelu with projection, quick_gelu without.
ClipTextConfig infer_clip_text_config(const TensorMap& map, bool with_projection, const std::string& what);

// Keys of a transformers CLIP state dict with the "text_model." prefix, whether or not the
// file has it.
TensorMap with_text_model_prefix(TensorMap map);
// An open_clip text tower (token_embedding, positional_embedding, transformer.resblocks.N...,
// ln_final, text_projection) as transformers keys.
TensorMap open_clip_to_transformers(const TensorMap& open_clip, int64_t hidden_size);

}  // namespace xltune
