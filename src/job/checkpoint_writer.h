// Writes the run's coordinated checkpoints (Note [Checkpoints]): every --checkpointing_steps, at
// the last step and when a signal stops the run. Every rank calls write(); the manifest records
// the run meaning a resume must match and the sampler's position.
#pragma once

#include <cstdint>

#include <nlohmann/json.hpp>

#include "data/sampler.h"
#include "dist/communicator.h"
#include "job/run_hooks.h"
#include "job/train_options.h"
#include "sdxl/sdxl_model.h"
#include "train/trainer.h"

namespace xltune {

class CheckpointWriter {
 public:
  // `meaning`: run_meaning of this run (with "input_images"). `hooks`: the injected write
  // failures and the crash inside a write (job/run_hooks.h).
  CheckpointWriter(const TrainOptions& o, Communicator& comm, const Trainer& trainer, const SdxlModel& model,
                   const DistributedSampler& sampler, nlohmann::json meaning, int64_t total_steps, RunHooks& hooks);

  // The checkpoint after `step`: a failed write throws, saying that the previous one is intact.
  void write(int64_t step);

 private:
  void write_files(const std::string& dir, int64_t step);

  const TrainOptions& o_;
  Communicator& comm_;
  const Trainer& trainer_;
  const SdxlModel& model_;
  const DistributedSampler& sampler_;
  nlohmann::json meaning_;
  int64_t total_;
  RunHooks& hooks_;
};

}  // namespace xltune
