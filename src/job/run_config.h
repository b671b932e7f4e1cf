// OUTPUT_DIR/run_config.json (rank 0, before the first step): every option as the command line
// resolved it, what the run derived from them and from its data and world, and the optimizer's
// groups as the trainer built them.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/placement.h"
#include "job/train_options.h"
#include "sdxl/sdxl_model.h"
#include "train/trainer.h"

namespace xltune {

// What the run derived before its first step ("resolved" in run_config.json).
struct ResolvedRun {
  uint64_t seed = 0;
  bool seed_was_random = false;
  int resolution = 0;
  int64_t samples = 0;
  int world = 1;
  int64_t steps_per_epoch = 0;
  int64_t total_steps = 0;
  std::string shard_dir;
  Placement placement;
  // The gradient path's dtypes (GradientPath): kUndefined where nothing travels.
  at::ScalarType grad_reduce_dtype = at::ScalarType::Undefined, zero_gather_dtype = at::ScalarType::Undefined;
};

// "fp32", "bf16", or "none" (kUndefined: nothing travels).
std::string traveling_dtype_name(at::ScalarType t);

// The file's JSON. `option_values`: every option by name as the command line resolved it.
// `validation_loss`: ValidationLoss::describe (null when off).
std::string run_config_json(const TrainOptions& o, const nlohmann::ordered_json& option_values, const ResolvedRun& run,
                            const Trainer& trainer, const SdxlModel& model,
                            const nlohmann::ordered_json& validation_loss = nullptr);

// The line that says what is about to train.
std::string training_summary(const TrainOptions& o, const ResolvedRun& run, const Trainer& trainer);

}  // namespace xltune
