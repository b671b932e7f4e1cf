// One loader for the whole SDXL model, from the two forms people have (design.md "Model
// input"): a diffusers folder (model_index.json, unet/, vae/, text_encoder/, text_encoder_2/,
// tokenizer/, tokenizer_2/, scheduler/) or a single-file SGM checkpoint
// (sd_xl_base_1.0.safetensors), read with SDXL base's embedded configs unless a folder of
// configs is given (a tiny test model's). Train, generate and inspect all go through it.
#pragma once

#include <string>

#include "diffusion/noise_schedule.h"
#include "models/unet.h"
#include "models/vae.h"
#include "text/clip_text_model.h"

namespace xltune {

struct SdxlLoadOptions {
  at::TensorOptions unet;           // dtype and device of the UNet's parameters
  at::TensorOptions text_encoders;  // ... of both text encoders
  at::TensorOptions vae;            // ... of the VAE (fp32: latents are cached once, exactly)
  bool with_vae = true;
  bool with_unet = true;
  std::string variant;     // "fp16": prefer *.fp16.safetensors in a folder
  // Single file only: a folder with unet/ and vae/ config.json (and optionally scheduler/,
  // text_encoder/, text_encoder_2/ configs and tokenizer/, tokenizer_2/), e.g. a diffusers
  // folder of the same model; default: SDXL base's configs, encoders inferred from the shapes.
  std::string config_dir;
};

struct SdxlModel {
  std::string path;
  bool single_file = false;
  UNetConfig unet_config;
  VaeConfig vae_config;
  NoiseScheduleConfig scheduler;
  // scheduler_config.json as text, and where it came from: generation builds its samplers from it.
  std::string scheduler_json, scheduler_source;
  // model_index.json's force_zeros_for_empty_prompt (diffusers' default, and SDXL base's: true).
  bool force_zeros_for_empty_prompt = true;
  UNet unet{nullptr};
  Vae vae{nullptr};
  ClipTextModel te1{nullptr}, te2{nullptr};
  // Tokenizer folders of a diffusers folder; empty for a single file (then the CLIP
  // vocabulary that setup installs is used, as SDXL's tokenizers are that vocabulary).
  std::string tokenizer_dir_1, tokenizer_dir_2;
};

// Throws Error naming the path and what is missing (a component folder, its config, its
// weights) before anything is loaded, so a bad --model fails in seconds, not after
// preprocessing.
void check_sdxl_model(const std::string& path);

SdxlModel load_sdxl(const std::string& path, const SdxlLoadOptions& options);
// The configs alone (no weights are read): for checks that must come before slow work.
SdxlModel read_sdxl_configs(const std::string& path, const std::string& config_dir = "");
// The pixel factor a --resolution must be a multiple of: the VAE's downscaling times the
// UNet's (8 x 4 = 32 for SDXL).
int64_t resolution_multiple(const SdxlModel& configs);

}  // namespace xltune
