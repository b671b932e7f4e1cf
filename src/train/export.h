// The files a trained run hands over (design.md "Output"), written from the trainer state:
//
//   lora.safetensors            the reference trainer's layout: "<attention>.processor.
//                               {to_q,to_k,to_v,to_out}_lora.{down,up}.weight", fp32, no alpha
//                               (its loaders apply scale 1), so alpha/rank is folded into up
//   embeddings.pti              {"text_encoders_0": [n, 768], "text_encoders_1": [n, 1280]}
//   special_params.json         {"TOK": "<s0><s1>"}
//   unet.safetensors            full fine-tuning: the whole UNet, diffusers keys
//   lora_kohya.safetensors      kohya keys "lora_unet_<path with _>.lora_down.weight",
//                               ".lora_up.weight", ".alpha", training metadata in __metadata__
//                               (diffusers' load_lora_weights, ComfyUI and AUTOMATIC1111 read it)
//   embeddings_sdxl.safetensors {"clip_l": [n, 768], "clip_g": [n, 1280]} (A1111, ComfyUI)
//
// job/trained_model_tar.h packs them into trained_model.tar and reads them back. Their names are
// spelled once, below: here rather than there because train may not include job (design.md
// "Parts"), and export, the tar, the run's outputs and `xltune export` must agree on them.
//
// Note [Trainer state file]
// trainer_state.safetensors holds the trainable tensors under their state names (see
// Trainer::trainable_state) and, in __metadata__["xltune_state"], a JSON object: kind ("lora"
// or "full"), lora_rank, lora_alpha, token_string, special_tokens, step, max_train_steps, model.
// With --use_ema its UNet tensors are the EMA's (the run's output, Note [EMA of the trained
// weights]) and training_metadata holds "xltune_ema_decay".
// `xltune export` rebuilds every file above from it (with --model for full fine-tuning, whose
// untrained tensors come from the base model).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "models/lora.h"

namespace xltune {

// The files above, and the trainer state they are rebuilt from (Note [Trainer state file]).
constexpr const char* kLoraFile = "lora.safetensors";
constexpr const char* kEmbeddingsFile = "embeddings.pti";
constexpr const char* kSpecialParamsFile = "special_params.json";
constexpr const char* kUnetFile = "unet.safetensors";
constexpr const char* kKohyaLoraFile = "lora_kohya.safetensors";
constexpr const char* kSdxlEmbeddingsFile = "embeddings_sdxl.safetensors";
constexpr const char* kTrainerStateFile = "trainer_state.safetensors";

struct TrainedWeights {
  std::string kind = "lora";  // or "full"
  int64_t lora_rank = 0;
  double lora_alpha = 0;
  std::vector<LoraTensors> lora;
  at::Tensor rows_1, rows_2;  // the new token rows of the two encoders
  std::string token_string = "TOK";
  std::string special_tokens = "<s0><s1>";
  NamedTensors unet;  // full fine-tuning: every UNet tensor (diffusers names), trained or not
  int64_t step = 0;
  int64_t max_train_steps = 0;
  std::string model;
  // Training facts for lora_kohya.safetensors' __metadata__ (ss_* keys), as strings.
  std::map<std::string, std::string> training_metadata;
};

// The state names of Trainer::trainable_state -> TrainedWeights (LoRA pairs grouped, rows).
// `unet_base`: full fine-tuning's untrained tensors (the base UNet's named parameters).
TrainedWeights trained_weights_from_state(const NamedTensors& state, const std::string& state_json,
                                          const NamedTensors& unet_base = {});
std::string state_metadata_json(const TrainedWeights& w);
void write_trainer_state(const std::string& path, const NamedTensors& state, const TrainedWeights& w);

// Writes every file above into `dir`; returns their names in tar order (the reference's files
// first: lora or unet, embeddings.pti, special_params.json; then the ecosystem files), which
// write_trained_model_tar (job/trained_model_tar.h) keeps.
// unet_dtype: the dtype of unet.safetensors (bf16 by default, as the reference).
std::vector<std::string> write_export_files(const TrainedWeights& w, const std::string& dir,
                                            at::ScalarType unet_dtype);

// Key names, exposed for tests and loaders.
std::string reference_lora_key(const std::string& module, const std::string& projection, bool up);
std::string kohya_lora_prefix(const std::string& module, const std::string& projection);

}  // namespace xltune
