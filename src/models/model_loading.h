// Loading the UNet and VAE from the files people have: a diffusers component folder
// (config.json + diffusion_pytorch_model[.fp16].safetensors, single or sharded) or the SDXL
// single-file checkpoint (model.diffusion_model.* / first_stage_model.*, converted by name).
// Parameters are allocated in the target dtype and device and filled one tensor at a time:
// no random initialisation, no whole-model fp32 copy. Missing and wrong-shape tensors are an
// error naming them; unknown ones are warned about.
#pragma once

#include <string>

#include "models/unet.h"
#include "models/vae.h"
#include "core/state_dict.h"

namespace xltune {

UNet load_unet(const std::string& dir, const ModelLoadOptions& load = {});
Vae load_vae(const std::string& dir, const ModelLoadOptions& load = {});

// From a single-file checkpoint; the config comes from a config.json (the single file has
// none): SDXL base's, or a tiny model's in tests.
UNet load_unet_from_single_file(const std::string& path, const UNetConfig& config, const ModelLoadOptions& load = {});
Vae load_vae_from_single_file(const std::string& path, const VaeConfig& config, const ModelLoadOptions& load = {});

// The single file's tensors under `prefix`, named as our model's parameters (`sgm_names`
// maps ours -> theirs). 1x1-conv attention weights of the SGM VAE are reshaped to linears.
TensorMap sgm_tensor_map(const SafetensorsSet& set, const std::string& prefix,
                         const std::map<std::string, std::string>& sgm_names);

}  // namespace xltune
