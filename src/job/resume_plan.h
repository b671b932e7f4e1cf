// The first phase of `xltune train`: whether the run resumes, from which checkpoint, with which
// seed. It runs before any model loads, so a refused resume costs nothing (Note [Checkpoints]).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "job/checkpoint.h"
#include "data/sampler.h"
#include "job/train_options.h"
#include "train/trainer.h"

namespace xltune {

class Communicator;

struct ResumePlan {
  std::optional<CheckpointInfo> checkpoint;  // the one every rank resumes from; none: a new run
  uint64_t seed = 0;                         // the run's: --seed, the checkpoint's, or random
  bool seed_was_random = false;
  double checked_seconds = 0;  // rank 0's checksums of the checkpoint

  bool resuming() const { return checkpoint.has_value(); }
  int64_t step() const { return checkpoint ? checkpoint->step : 0; }
  // The run meaning the checkpoint was written with (a resumed run only).
  const nlohmann::json& meaning() const { return checkpoint->manifest.at("meaning"); }
};

// Every rank calls it. Rank 0 finds and verifies the checkpoint (--resume auto|none|PATH) and
// every rank then reads the same one; its seed is the run's (a different --seed is an error).
// Without one, --seed or rank 0's random seed, shared by every rank.
ResumePlan plan_resume(const TrainOptions& o, Communicator& comm);

// Refuses to resume a run that means something else: a checkpoint beyond --max_train_steps,
// trained from --input_images while this run has --shards (or the other way round), or whose
// meaning (run_meaning) differs from `ours` in any field.
void check_resume_matches(const ResumePlan& plan, const nlohmann::json& ours, bool from_shards, int64_t total_steps);

// What a resume keeps of --deterministic's promise (Note [Deterministic mode]), for a warning:
// "" when it keeps it or there was none; otherwise why the continuation is not bit-identical to
// the uninterrupted run: the checkpoint's run was deterministic (its manifest's "deterministic")
// and this one is not, or runs on another number of ranks. Not a refusal: the mode changes a
// step's last bits, not what the step means, so it is not part of run_meaning.
std::string resume_determinism_warning(const ResumePlan& plan, bool deterministic, int world);

// The trainer's tensors of checkpoint `dir` for Trainer::restore: trainer.safetensors, and the
// ZeRO-1 optimizer shards of however many ranks wrote them merged into full per-tensor moments
// (Note [Sharded optimizer state]).
std::map<std::string, at::Tensor> load_resume_tensors(const std::string& dir);

// Puts a resumed run where its checkpoint left it: the trainer's tensors and optimizer state
// from the checkpoint, the sampler replayed to its step (its order is a function of the seed and
// the step). Returns the first step to run.
int64_t resume_training(const ResumePlan& plan, Trainer& trainer, DistributedSampler& sampler, int64_t batch_size,
                        int64_t total_steps, bool log);

}  // namespace xltune
