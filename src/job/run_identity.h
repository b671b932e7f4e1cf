// What identifies a training run, for the latent cache and for resuming (Note [Checkpoints]):
// the images by their bytes, the VAE by its config and weights file, and the run's meaning (the
// options that must be the same to resume it).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "job/train_options.h"
#include "sdxl/sdxl_model.h"
#include "train/trainer.h"

namespace xltune {

// A file by its path and size.
std::string file_fingerprint(const std::string& path);
// The training images by their bytes (CRC-32C and size of the archive, or of every file of a
// folder with its relative name), not the path or the time: a copied or moved archive still
// resumes and an edited one does not.
std::string content_identity(const std::string& path);
// The VAE that made a latent cache: its config and weights file.
std::string vae_fingerprint(const SdxlModel& configs, const std::string& model);
// What must be the same to resume a run, derived from the trainer's configuration (what training
// really uses) and the data: max_train_steps may grow, the pivot stays where the checkpoint's run
// put it. `input_id`: content_identity of --input_images ("" with --shards).
struct RunData {
  std::string model;
  int resolution = 0;
  std::string token_string;
  int64_t global_batch = 0;
  std::string shards_id, input_id;
  int64_t held_out = 0;  // images held out of training for the validation loss (Note [Validation loss])
  // Note [Aspect buckets]: false, or {"bucket_step", "max_aspect_ratio"} (the shards').
  nlohmann::json aspect_buckets = false;
};
nlohmann::json run_meaning(const TrainerConfig& tc, const RunData& data);
// Fails naming the option of the first field of `theirs` (a checkpoint's meaning) that `ours`
// does not share (seed and pivot are the checkpoint's to give), or of a field that `ours` has
// only when on ("held_out") and `theirs` lacks.
void check_meaning(const nlohmann::json& theirs, const nlohmann::json& ours, const std::string& dir);

}  // namespace xltune
