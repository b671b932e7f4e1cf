// Random SDXL-shaped models in the diffusers folder layout, for tests, the quickstart and the
// benchmarks (`xltune init-model`). Same configs and seed, same bytes.
//
// Note [Random model weights]
// Each tensor comes from its own generator keyed by (seed, FNV-1a of "component/name"), so
// adding a tensor elsewhere changes nothing else. Matrices and convolutions: N(0, 1/fan_in)
// (activations keep their scale through depth); norm weights 1 + N(0, 0.02^2); biases and norm
// biases N(0, 0.02^2); embeddings N(0, 0.02^2) (CLIP's own initialiser range).
#pragma once

#include <cstdint>
#include <string>

#include <torch/nn/module.h>

namespace xltune {

// config.json texts of one model (diffusers for unet/vae/scheduler, transformers for the encoders).
struct ModelConfigSet {
  std::string unet, vae, text_encoder, text_encoder_2, scheduler;
};

// "tiny": a training step in well under a second on 2 CPU cores (tests, quickstart);
// "small": SDXL's shape at a fraction of its size (three levels, 64-wide heads, both
// encoders, text_time conditioning), a few hundred MB, for benchmarks.
ModelConfigSet preset_configs(const std::string& preset);
// unet/config.json, vae/config.json, text_encoder/config.json, text_encoder_2/config.json and
// scheduler/scheduler_config.json of a folder (what --from-config reads).
ModelConfigSet configs_from_folder(const std::string& dir);

// Writes model_index.json and the unet, vae, text_encoder, text_encoder_2 and scheduler folders
// (configs + random fp32 weights) into `out_dir`. Tokenizer folders are the caller's (they need
// the CLIP vocabulary). Returns the number of parameters written.
int64_t write_random_model(const std::string& out_dir, const ModelConfigSet& configs, uint64_t seed);

// Fills every parameter of `module` as Note [Random model weights] says, keyed by `component`
// (other models' folders: init-model's preprocessing presets).
void randomize_module(torch::nn::Module& module, const std::string& component, uint64_t seed);

}  // namespace xltune
