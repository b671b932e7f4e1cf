#include "job/training_loop.h"

#include <chrono>
#include <cmath>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/log.h"
#include "core/memory_stats.h"
#include "dist/collective_watchdog.h"
#include "job/step_dump.h"

namespace xltune {
namespace {

using Clock = std::chrono::steady_clock;

// --replica_check_steps: every rank must hold rank 0's trainable tensors, bit for bit.
void check_replicas(Communicator& comm, const Trainer& trainer, int64_t step) {
  if (comm.size() == 1) return;
  for (const auto& [name, t] : trainer.trainable_state()) {
    at::Tensor theirs = t.clone();
    comm.broadcast(theirs, 0);
    XLTUNE_CHECK(at::equal(theirs, t), "step ", step, ": rank ", comm.rank(), " holds another ", name, " than rank 0 (",
                 "max difference ", (theirs - t).abs().max().item<double>(), "): the replicas have drifted apart");
  }
  log_debug("step ", step, ": every rank holds the same trainable tensors");
}

}  // namespace

TrainingLoop::TrainingLoop(const TrainOptions& o, Communicator& comm, Trainer& trainer, const TrainingSet& set,
                           DistributedSampler& sampler, Validation& validation, const ValidationLoss& validation_loss,
                           CheckpointWriter& checkpoints, MetricsLog* metrics, at::Device device, RunHooks& hooks)
    : o_(o), comm_(comm), trainer_(trainer), set_(set), sampler_(sampler), validation_(validation),
      validation_loss_(validation_loss), checkpoints_(checkpoints), metrics_(metrics), device_(device), hooks_(hooks) {}

TrainingLoop::Agreed TrainingLoop::agree(const StepResult& r, const std::vector<uint64_t>& indices,
                                         const std::vector<int64_t>& positions) {
  const int world = comm_.size();
  std::vector<double> shared(2 + static_cast<size_t>(o_.samples_per_rank_step()) * world, 0.0);
  shared[0] = r.loss;
  shared.back() = hooks_.stop_signal() != 0 ? 1.0 : 0.0;
  for (size_t j = 0; j < indices.size(); ++j)  // the samples by their place in the shards
    shared[1 + static_cast<size_t>(positions[j])] = static_cast<double>(set_.shard_samples.at(indices[j])) + 1.0;
  shared = all_reduce_sum_values(comm_, shared, device_);
  Agreed a;
  a.loss = shared[0] / world;
  for (size_t k = 1; k + 1 < shared.size(); ++k)
    if (shared[k] > 0) a.samples.push_back(static_cast<int64_t>(shared[k]) - 1);
  a.stopping = shared.back() > 0;
  a.global_batch = static_cast<int64_t>(indices.size()) * world;
  return a;
}

void TrainingLoop::log_metrics(int64_t step, int64_t epoch, const StepResult& r, const Agreed& a, double seconds,
                               std::optional<double> validation_loss) {
  nlohmann::ordered_json line = {{"step", step}, {"epoch", epoch}, {"loss", a.loss}};
  if (validation_loss) line["validation_loss"] = *validation_loss;  // Note [Validation loss]
  nlohmann::ordered_json lr = nlohmann::ordered_json::object();
  for (const auto& [name, value] : r.learning_rates) lr[name] = value;
  line["lr"] = lr;
  line["grad_norm"] = r.grad_norm;
  if (!r.skipped.empty()) line["skipped"] = r.skipped;  // Note [Skipped steps]
  line["samples_per_s"] = seconds > 0 ? static_cast<double>(a.global_batch) / seconds : 0.0;
  line["peak_memory_bytes"] = peak_memory_bytes(device_);
  line["text_encoders_ran"] = r.text_encoders_ran;
  line["optimizer_state_bytes"] = trainer_.optimizer_state_bytes();  // this rank's
  line["samples"] = a.samples;
  metrics_->append(line.dump(), a.loss);
}

TrainingLoop::IssuedStep TrainingLoop::issue(int64_t step) {
  IssuedStep issued;
  issued.step = step;
  issued.start = Clock::now();
  set_current_step(step);  // named by a collective that times out (Note [No hang])
  issued.epoch = sampler_.position().epoch;
  // The rank's samples of the step, as one batch of b x K (Note [Distributed sampler]), split
  // into K micro-batches (Note [Gradient accumulation]).
  issued.indices = sampler_.next_batch(static_cast<size_t>(o_.samples_per_rank_step()));
  for (size_t j = 0; j < issued.indices.size(); ++j)
    issued.positions.push_back(static_cast<int64_t>(j) * comm_.size() + comm_.rank());
  const size_t b = static_cast<size_t>(o_.train_batch_size);
  for (size_t first = 0; first < issued.indices.size(); first += b) {
    const size_t last = std::min(issued.indices.size(), first + b);
    issued.micro.push_back(set_.batch({issued.indices.begin() + first, issued.indices.begin() + last},
                                      {issued.positions.begin() + first, issued.positions.begin() + last}));
    set_.drop_captions(issued.micro.back(), trainer_.config().seed, step, o_.caption_dropout_rate);
    if (hooks_.poison_batch(comm_.rank(), step)) issued.micro.back().latent_mean.fill_(std::nan(""));
  }
  hooks_.before_step(comm_.rank(), step);
  trainer_.issue(step, issued.micro);
  return issued;
}

bool TrainingLoop::handled_at_once(int64_t step, int64_t total) const {
  // An agreement on the device's communicator would be queued behind the next step and wait for
  // it: handling a step late would gain nothing. (The job's is the host's: MPI, threads.)
  return comm_.device_type() != c10::DeviceType::CPU || step == total || step % o_.checkpointing_steps == 0 || !o_.dump_steps.empty() ||
         (o_.replica_check_steps > 0 && step % o_.replica_check_steps == 0) || validation_loss_.due(step, total) ||
         validation_.due(step, total);
}

bool TrainingLoop::stop_agreed_before_issuing(int64_t step) {
  set_current_step(step);  // a rank that never joins is named at the step about to be issued
  const double mine = hooks_.stop_signal() != 0 ? 1.0 : 0.0;
  return all_reduce_sum_values(comm_, {mine}, device_).front() > 0;  // one rank: its own flag
}

bool TrainingLoop::handle(const IssuedStep& issued, int64_t total, Handling how, TrainProgress& progress,
                          TrainingLoopEnd& end) {
  const int64_t step = issued.step;
  set_current_step(step);
  StepResult r = trainer_.collect();
  Agreed a = agree(r, issued.indices, issued.positions);
  // A stop agreed on at the step before is this step's too (that signal's flag may not be read
  // again here): the step is checkpointed and the run ends.
  a.stopping = a.stopping || how == Handling::kStopAgreed;
  end.last_step = step, end.last_loss = a.loss;
  if (!r.skipped.empty()) {
    ++end.skipped_steps;
    if (metrics_ != nullptr) log_warn("step ", step, " skipped: ", r.skipped, " (", r.skipped_in_a_row, " in a row)");
    XLTUNE_CHECK(r.skipped_in_a_row < o_.max_skipped_steps, "step ", step, ": ", r.skipped_in_a_row,
                 " steps in a row were skipped (", r.skipped, "; --max_skipped_steps ", o_.max_skipped_steps,
                 "): training has diverged; lower the learning rates or check the model and images. ",
                 "The last checkpoint is intact");
  }
  // The step's time: until the next step began (a step handled late) or until now.
  const Clock::time_point until = how == Handling::kNextIssued ? issued.next_start : Clock::now();
  const double seconds = std::chrono::duration<double>(until - issued.start).count();
  std::optional<double> validation_loss;  // every rank measures its share (Note [Validation loss])
  if (how != Handling::kNextIssued) {  // handled_at_once: what reads the step's weights or draws
    if (!o_.dump_steps.empty())
      write_step_dump(o_.dump_steps, step, concatenated(issued.micro), r, comm_.size() > 1 ? comm_.rank() : -1);
    if (o_.replica_check_steps > 0 && step % o_.replica_check_steps == 0) check_replicas(comm_, trainer_, step);
    if (validation_loss_.due(step, total)) validation_loss = validation_loss_.evaluate(trainer_, comm_);
  }
  if (metrics_ != nullptr) {
    log_metrics(step, issued.epoch, r, a, seconds, validation_loss);
    progress.update(step, a.loss, r.learning_rates.front().second, validation_loss);
  }
  if (how == Handling::kNextIssued) return a.stopping;  // the stop happens at the step issued
  if (validation_.due(step, total)) {
    progress.finish();
    const ParameterEma::Swap ema = trainer_.ema_weights_in();  // every rank renders with the EMA's weights
    validation_.render(step, comm_);
  }
  if (step % o_.checkpointing_steps == 0 || step == total || a.stopping) {
    progress.finish();
    checkpoints_.write(step);
  }
  return a.stopping;
}

TrainingLoopEnd TrainingLoop::run(int64_t first_step, int64_t total) {
  TrainingLoopEnd end;
  end.last_step = first_step - 1;
  TrainProgress progress(total, o_.log_every, comm_.rank() == 0 && o_.verbose);
  reset_peak_memory(device_);
  // Note [Reading a step one step late] (train/trainer.h): a step is handled (its result read,
  // agreed on, logged) once the next is issued, so the device has the next step queued while the
  // host reads this one; at once where something reads the weights or the draws (a checkpoint,
  // validation, a dump, a replica check) and at the last step. The ranks agree on a stop before
  // the next step is issued (a host all-reduce of one number), so the run stops where it would
  // have.
  std::optional<IssuedStep> waiting;
  for (int64_t step = first_step; step <= total; ++step) {
    if (waiting && stop_agreed_before_issuing(step)) {  // the waiting step is checkpointed, the run ends
      handle(*waiting, total, Handling::kStopAgreed, progress, end);
      end.stopped = true;
      break;
    }
    IssuedStep issued = issue(step);
    bool stop_agreed = false;
    if (waiting) {
      waiting->next_start = issued.start;
      stop_agreed = handle(*waiting, total, Handling::kNextIssued, progress, end);
      waiting.reset();
    }
    if (!stop_agreed && !handled_at_once(step, total)) {
      waiting = std::move(issued);
      continue;
    }
    const bool stopping = handle(issued, total, stop_agreed ? Handling::kStopAgreed : Handling::kNow, progress, end);
    if (stopping && step < total) {
      end.stopped = true;
      break;
    }
  }
  progress.finish();
  return end;
}

}  // namespace xltune
