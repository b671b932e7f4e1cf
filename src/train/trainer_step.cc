// Issuing a step and reading it (Note [Reading a step one step late], train/trainer.h): the eager
// step queued up to its read, and the read waited for and settled on the host. The captured
// step's issuing is train/trainer_graph.cc's; the step's pieces (draws, text, forward and
// backward, clipping) are train/trainer.cc's.
#include <ATen/ATen.h>

#include <array>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/log.h"
#include "dist/gradient_reducer.h"
#include "train/trainer.h"

namespace xltune {

StepResult Trainer::step(int64_t step, const std::vector<StepBatch>& micro_batches) {
  issue(step, micro_batches);
  return collect();
}

void Trainer::issue(int64_t step, const std::vector<StepBatch>& micro_batches) {
  XLTUNE_CHECK(step >= 1 && step <= config_.max_train_steps, "trainer: step ", step, " outside 1 .. ",
               config_.max_train_steps);
  XLTUNE_CHECK(!micro_batches.empty(), "trainer: a step needs at least one micro-batch");
  XLTUNE_CHECK(settled_.size() + (in_flight_ ? 1 : 0) <= 1, "trainer: step ", step,
               " issued with two steps not collected");
  // Note [Reading a step one step late]: the step before is read after this one is queued,
  // unless this one depends on its verdict.
  if (in_flight_ && !may_issue_before_settling()) {
    if (!late_read_blocker_logged_) {
      log_info("step ", step, " is issued after step ", in_flight_->step, " is read, not before: ", late_read_blocker(),
               " (Note [Reading a step one step late])");
      late_read_blocker_logged_ = true;
    }
    settle_in_flight();
  }
  if (in_flight_) ++steps_issued_before_settling_;
  mark("begin");
  const bool trains_rows = pivotal_->trains_rows(step);
  if (!trains_rows) freeze_token_rows();
  std::optional<InFlightStep> next;
  if (config_.step_graph != TrainerConfig::StepGraph::kOff) {
    const std::string blocker = graph_blocker(micro_batches, trains_rows);
    if (blocker.empty()) {
      next = graphed_step(step, micro_batches.front());
    } else {
      drop_step_graphs();  // a replay repeats the host side of its capture's step: none may come between
      if (blocker != graph_blocker_logged_) {
        log_info("step ", step, " runs eagerly, not from a CUDA graph: ", blocker);
        graph_blocker_logged_ = blocker;
      }
    }
  }
  if (!next) next = eager_step(step, micro_batches, trains_rows);
  settle_in_flight();  // the step before: its read was queued ahead of this step's work
  in_flight_ = std::move(next);
}

StepResult Trainer::collect() {
  if (settled_.empty()) settle_in_flight();
  XLTUNE_CHECK(!settled_.empty(), "trainer: collect() with no step issued");
  StepResult result = std::move(settled_.front());
  settled_.pop_front();
  return result;
}

bool Trainer::may_issue_before_settling() const { return late_read_blocker().empty(); }

std::string Trainer::late_read_blocker() const {
  if (ema_) return "the EMA (--use_ema) reads each step's weights right after its update";
  if (config_.grad_spike_factor > 0) return "the spike test (--grad_spike_factor) needs the accepted steps' norms";
  // The learning rate of the next step, with the step in flight skipped or taken.
  const int64_t accepted = guard_.accepted_steps();
  if (config_.schedule.factor_for_step(accepted + 1) != config_.schedule.factor_for_step(accepted + 2))
    return "the learning rate (--lr_scheduler " + lr_schedule_name(config_.schedule.kind) +
           ") depends on whether the step before was taken";
  return "";
}

void Trainer::require_settled(const char* what) const {
  XLTUNE_CHECK(!in_flight_, "trainer: ", what, " while step ", in_flight_ ? in_flight_->step : 0,
               " is in flight: collect() it first");
}

void Trainer::settle_in_flight() {
  if (!in_flight_) return;
  settle(*in_flight_);
  settled_.push_back(std::move(in_flight_->result));
  in_flight_.reset();
}

Trainer::InFlightStep Trainer::eager_step(int64_t step, const std::vector<StepBatch>& micro_batches,
                                          bool trains_rows) {
  int64_t samples = 0;
  for (const auto& m : micro_batches) samples += m.latent_mean.size(0);
  InFlightStep s;
  s.step = step;
  StepResult& result = s.result;
  reducer_->before_backward();
  for (auto& o : optimizers_) o->before_backward();
  at::Tensor loss_sum;
  for (size_t k = 0; k < micro_batches.size(); ++k) {
    const bool last = k + 1 == micro_batches.size();
    reducer_->set_gradient_sync(last);
    for (auto& o : optimizers_) o->set_gradient_sync(last);
    // Each micro-batch's mean loss weighted by its share: the step's loss is the mean over the
    // rank's samples, whatever their split (Note [Gradient accumulation]).
    const double weight = micro_batches.size() == 1
                              ? 1.0
                              : static_cast<double>(micro_batches[k].latent_mean.size(0)) / static_cast<double>(samples);
    at::Tensor loss = forward_backward(step, micro_batches[k], trains_rows, weight, result);
    loss_sum = loss_sum.defined() ? loss_sum + loss * weight : (weight == 1.0 ? loss : loss * weight);
  }
  reducer_->finish();
  for (auto& o : optimizers_) o->after_backward();
  mark("backward");

  const at::Tensor grad_norm = clip_gradients();
  mark("clip");
  // Note [The step's verdict on the device]: the update is queued with the verdict as a device
  // tensor; the host learns it, with the norm and the loss, from one read after the update.
  const at::Tensor apply = guard_.verdict_on_device(grad_norm);
  const double factor = config_.schedule.factor_for_step(guard_.accepted_steps() + 1);
  for (auto& o : optimizers_) {
    if (device_learning_rates_) o->stage_learning_rates(factor);
    o->step(factor, step, apply);
  }
  if (trains_rows) pivotal_->after_optimizer_step(apply);
  mark("optimizer");
  s.read = StepRead::enqueue(grad_norm, apply, loss_sum);
  for (auto& o : optimizers_) {
    o->zero_grad();
    o->add_learning_rates(factor, result.learning_rates);
  }
  return s;
}

void Trainer::settle(InFlightStep& s) {
  const std::array<double, 3> values = s.read.wait();
  StepResult& result = s.result;
  result.grad_norm = values[0];
  const bool applied = values[1] != 0;
  result.loss = values[2];
  // Note [Skipped steps]: the norm is global, so every rank takes the same branch.
  result.skipped = guard_.verdict(result.grad_norm);
  XLTUNE_CHECK(result.skipped.empty() == applied, "trainer: the device's verdict on step ", s.step, " (",
               applied ? "take" : "skip", ") differs from the host's for norm ", result.grad_norm);
  for (auto& o : optimizers_) o->settle(applied);
  if (applied) {
    guard_.accept(result.grad_norm);
    if (ema_) {
      wait_parameters();  // the EMA reads the updated weights: no overlap of the all-gathers then
      ema_->update(guard_.accepted_steps());  // a skipped step does not move the EMA either
    }
  } else {
    guard_.skip();
  }
  result.skipped_in_a_row = guard_.skipped_in_a_row();
}

}  // namespace xltune
