// `xltune generate`: images from an SDXL model and, optionally, what `xltune train` (or
// Replicate's trainer) made, as the reference's predict.py offers them (txt2img, img2img,
// inpainting; seven schedulers; lora_scale; negative prompts). What it writes in --out:
//   out-0.png ... out-(n-1).png   each with a "parameters" text chunk in AUTOMATIC1111's layout
//   grid.png                      all of them side by side, when n > 1
//   latents.safetensors           with --save_latents: the final latents (for checking)
// On many ranks (mpirun -np N) the outputs are split round-robin over the ranks (one GPU
// each), each rank draws the random numbers of all of them and keeps its own (Note [Generation
// as diffusers draws it]), and rank 0 writes every file.
#pragma once

#include <string>
#include <vector>

#include "core/attention_kernel.h"
#include "dist/communicator.h"

namespace xltune {

struct GenerateOptions {
  std::string model;
  std::string model_config;
  std::string lora;  // trained_model.tar, an output folder, or a LoRA .safetensors (reference, kohya, peft)
  double lora_scale = 0.6;
  std::string prompt = "An astronaut riding a rainbow unicorn";
  std::string negative_prompt;
  bool has_negative_prompt = false;
  int64_t width = 1024, height = 1024;
  int64_t num_outputs = 1;
  int64_t num_inference_steps = 50;
  double guidance_scale = 7.5;
  std::string scheduler = "K_EULER";
  int64_t seed = -1;  // < 0: a random 16-bit seed, printed (as the reference)
  std::string image, mask;
  double prompt_strength = 0.8;
  std::string out = "outputs";
  std::string device = "auto";
  bool save_latents = false;
  int threads = 0;
  AttentionKernel attention = AttentionKernel::kAuto;  // Note [Attention kernels]
};

struct GenerateReport {
  std::vector<std::string> files;
  uint64_t seed = 0;
  double seconds = 0;             // all of it: loading, generating, writing
  double generating_seconds = 0;  // the pipeline alone (what bench/generate.py times)
};

GenerateReport run_generate_job(const GenerateOptions& options, Communicator& comm);

// A1111's sampler name for a --scheduler name ("K_EULER_ANCESTRAL" -> "Euler a").
std::string a1111_sampler_name(const std::string& scheduler);

}  // namespace xltune
