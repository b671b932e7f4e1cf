// The steps of `xltune train` (Note [The job's shape], step 3), from the first one after a
// checkpoint to the last: each step draws this rank's samples, issues it to the trainer, agrees
// on the global loss and on whether a rank was asked to stop (one small all-reduce), measures
// the validation loss when due, logs the metrics (rank 0), renders validation images when due and
// writes checkpoints. A step is handled after the next one is issued where nothing is due at it
// (Note [Reading a step one step late], train/trainer.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include <c10/core/Device.h>

#include "data/sampler.h"
#include "dist/communicator.h"
#include "job/checkpoint_writer.h"
#include "job/progress.h"
#include "job/run_hooks.h"
#include "job/run_outputs.h"
#include "job/train_options.h"
#include "job/training_set.h"
#include "job/validation.h"
#include "job/validation_loss.h"
#include "train/trainer.h"

namespace xltune {

struct TrainingLoopEnd {
  int64_t last_step = 0;     // the last step run (first - 1 when none ran)
  bool stopped = false;      // a stop signal (RunHooks::stop_signal) ended the run after a checkpoint
  double last_loss = 0;      // the global loss of the last step run
  int64_t skipped_steps = 0; // steps run whose optimizer step was skipped (Note [Skipped steps])
};

class TrainingLoop {
 public:
  // `metrics`: rank 0's metrics log, null on the other ranks. `hooks`: asked at each step whether
  // to stop, and whether this rank must fail there (job/run_hooks.h).
  TrainingLoop(const TrainOptions& o, Communicator& comm, Trainer& trainer, const TrainingSet& set,
               DistributedSampler& sampler, Validation& validation, const ValidationLoss& validation_loss,
               CheckpointWriter& checkpoints, MetricsLog* metrics, at::Device device, RunHooks& hooks);

  // Steps first_step..total_steps; stops early (after a checkpoint) when a rank's hooks report a
  // stop signal (SIGTERM/SIGUSR1 in production).
  TrainingLoopEnd run(int64_t first_step, int64_t total_steps);

 private:
  // What every rank agrees on after a step: the global batch's loss, which samples it held (in
  // global position order) and whether a rank was asked to stop.
  struct Agreed {
    double loss = 0;
    std::vector<int64_t> samples;
    int64_t global_batch = 0;  // samples in the step, over every rank
    bool stopping = false;
  };
  Agreed agree(const StepResult& r, const std::vector<uint64_t>& indices, const std::vector<int64_t>& positions);
  // A step issued to the trainer, not handled yet.
  struct IssuedStep {
    int64_t step = 0, epoch = 0;
    std::vector<uint64_t> indices;   // the rank's samples (sampler order)
    std::vector<int64_t> positions;  // their places in the global batch
    std::vector<StepBatch> micro;    // for a dump
    std::chrono::steady_clock::time_point start, next_start;  // next_start: when handled late
  };
  // Draws the step's samples and issues it (Trainer::issue).
  IssuedStep issue(int64_t step);
  // Whether the step must be handled before the next is issued: it checkpoints, validates, dumps,
  // checks replicas or is the last (or the ranks agree on a device's communicator).
  bool handled_at_once(int64_t step, int64_t total) const;
  // Whether a rank was asked to stop, agreed on by all (every rank calls it at the same step).
  bool stop_agreed_before_issuing(int64_t step);
  enum class Handling {
    kNextIssued,  // late: the next step is queued; log only (handled_at_once was false)
    kNow,         // everything due at the step
    kStopAgreed,  // kNow, and a stop was agreed on at the step before
  };
  // Collects the step, agrees on it, logs it and (unless kNextIssued) does what is due at it;
  // returns whether the ranks agreed to stop.
  bool handle(const IssuedStep& issued, int64_t total, Handling how, TrainProgress& progress, TrainingLoopEnd& end);
  void log_metrics(int64_t step, int64_t epoch, const StepResult& r, const Agreed& a, double seconds,
                   std::optional<double> validation_loss);

  const TrainOptions& o_;
  Communicator& comm_;
  Trainer& trainer_;
  const TrainingSet& set_;
  DistributedSampler& sampler_;
  Validation& validation_;
  const ValidationLoss& validation_loss_;
  CheckpointWriter& checkpoints_;
  MetricsLog* metrics_;
  at::Device device_;
  RunHooks& hooks_;
};

}  // namespace xltune
