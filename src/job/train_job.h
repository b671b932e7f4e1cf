// `xltune train`, the whole job (design.md "The shape"):
//
//   options checked -> model configs checked against --resolution -> preprocessing into
//   OUTPUT_DIR/shards (or --shards) -> model loaded -> latent cache (OUTPUT_DIR/latents) ->
//   training set in memory -> run_config.json -> steps (progress, metrics.jsonl, --dump_steps,
//   checkpoints every --checkpointing_steps) -> trainer_state.safetensors, the exported files
//   and trained_model.tar (last: the run is complete when it exists) -> loss.png
//
// Outputs of an earlier run in OUTPUT_DIR are removed first, so that a run that fails leaves
// nothing that looks complete.
#pragma once

#include <string>
#include <vector>

#include "job/train_options.h"

namespace xltune {

struct TrainJobReport {
  std::string output_dir;
  std::string tar_path;
  std::vector<std::string> files;  // members of the tar
  int64_t steps = 0;
  int64_t samples = 0;
  int64_t trainable_parameters = 0;
  uint64_t seed = 0;
  double final_loss = 0;
  double seconds = 0;
};

// options_json: every option as resolved by the command line (for run_config.json).
TrainJobReport run_train_job(const TrainOptions& options, const std::string& options_json);

}  // namespace xltune
