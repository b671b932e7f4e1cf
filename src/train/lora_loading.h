// Reading the UNet LoRA files people have, as LoraTensors for attach_lora_weights():
//
//   reference   "<module>.processor.{to_q,to_k,to_v,to_out}_lora.{down,up}.weight"
//               (Replicate's lora.safetensors; scale 1: its loaders apply no alpha)
//   kohya       "lora_unet_<module_and_projection with _>.{lora_down,lora_up}.weight" and ".alpha"
//               (scale alpha / rank); module names in diffusers' layout
//   peft        "[unet.]<module>.<projection>.lora_A.weight" / ".lora_B.weight" (diffusers'
//               save_lora_weights; scale lora_alpha / r from __metadata__["lora_adapter_metadata"]
//               when present, else 1)
//   diffusers   "[unet.]<module>.<projection>.lora.down.weight" / ".lora.up.weight" (0.2x)
//
// Underscored kohya names are matched against the UNet's own attention projections, so no
// guessing where an underscore was a dot. Keys of other parts (text encoder LoRA: lora_te1_,
// lora_te2_, text_encoder.) are an error naming them: xltune trains and applies UNet LoRA only.
#pragma once

#include <string>
#include <vector>

#include "models/lora.h"

namespace xltune {

struct LoraFile {
  std::string format;  // "reference", "kohya", "peft" or "diffusers"
  std::vector<LoraTensors> weights;
};

LoraFile read_lora_file(const std::string& path, UNetImpl& unet);

}  // namespace xltune
