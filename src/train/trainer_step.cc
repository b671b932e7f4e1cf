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
  const StepInputs in = step_inputs();
  mark("begin");
  const bool trains_rows = pivotal_->trains_rows(step);
  if (!trains_rows) freeze_token_rows();
  std::optional<InFlightStep> next;
  if (config_.step_graph != TrainerConfig::StepGraph::kOff) {
    const std::string blocker = graph_blocker(micro_batches, trains_rows);
    if (blocker.empty()) {
      next = graphed_step(step, micro_batches, in);
    } else {
      drop_step_graphs();  // a replay repeats the host side of its capture's step: none may come between
      if (blocker != graph_blocker_logged_) {
        log_info("step ", step, " runs eagerly, not from a CUDA graph: ", blocker);
        graph_blocker_logged_ = blocker;
      }
    }
  }
  if (!next) next = eager_step(step, micro_batches, trains_rows, in);
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
  // The learning rate of the next step, with the step in flight skipped or taken: the fused
  // kernel picks it on the device (StepInputs), the foreach kernel's is a host number.
  const int64_t accepted = guard_.accepted_steps();
  if (!device_learning_rates_ &&
      config_.schedule.factor_for_step(accepted + 1) != config_.schedule.factor_for_step(accepted + 2))
    return "the learning rate (--lr_scheduler " + lr_schedule_name(config_.schedule.kind) +
           ") depends on whether the step before was taken, and the foreach AdamW kernel reads it on the host";
  return "";
}

void Trainer::set_up_device_learning_rates() {
  if (config_.adamw_kernel != AdamWKernel::kFused) return;
  for (auto& o : optimizers_) o->use_device_learning_rates();
  device_learning_rates_ = true;
  for (const auto& o : optimizers_) device_learning_rates_ = device_learning_rates_ && o->reads_device_learning_rates();
}

Trainer::StepInputs Trainer::step_inputs() const {
  at::NoGradGuard no_grad;
  StepInputs in;
  const int64_t a = guard_.accepted_steps();  // settled; the step in flight may add one
  const double f_skipped = config_.schedule.factor_for_step(a + 1), f_taken = config_.schedule.factor_for_step(a + 2);
  const bool depends = f_skipped != f_taken || config_.grad_spike_factor > 0 || ema_;
  // A copy, made only where an input depends on it: the step in flight's verdict may be a captured
  // step's output, which the next replay rewrites, and the learning rates are staged from it after
  // the eager step's backward.
  const at::Tensor before_taken = in_flight_ && depends ? in_flight_->apply.clone() : at::Tensor();
  in.lr_factor = EitherWay::either(f_skipped, f_taken, before_taken);
  if (before_taken.defined() && config_.grad_spike_factor > 0)
    in.spike_threshold = guard_.threshold_after(in_flight_->grad_norm, before_taken);
  if (ema_) {
    // After this step, if taken, a + 1 steps were accepted (a + 2 if the one in flight was too).
    const double max_decay = ema_->max_decay();
    in.ema_weight = at::empty({}, at::TensorOptions().dtype(at::kFloat).device(device_));
    EitherWay::either(1 - ParameterEma::decay_at(max_decay, a + 1), 1 - ParameterEma::decay_at(max_decay, a + 2),
                      before_taken)
        .write_into(in.ema_weight);
  }
  return in;
}

void Trainer::after_update(const StepInputs& in, InFlightStep& s) {
  if (ema_) {
    wait_parameters();  // the EMA reads the updated weights: no overlap of the all-gathers then
    at::NoGradGuard no_grad;
    ema_->update(in.ema_weight * s.apply);  // a skipped step does not move the EMA either
  }
  for (auto& o : optimizers_) o->add_learning_rates(in.lr_factor.if_skipped, s.result.learning_rates);
  if (!in.lr_factor.is_known())
    for (auto& o : optimizers_) o->add_learning_rates(in.lr_factor.if_taken, s.learning_rates_if_taken);
  s.accepted_at_issue = guard_.accepted_steps();
  s.behind_another = in_flight_.has_value();
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
                                          bool trains_rows, const StepInputs& in) {
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
  const at::Tensor apply = in.spike_threshold.defined() ? guard_.verdict_on_device(grad_norm, in.spike_threshold)
                                                         : guard_.verdict_on_device(grad_norm);
  // The factor is known here unless the optimizers pick it on the device (late_read_blocker).
  const double factor = device_learning_rates_ ? in.lr_factor.if_skipped : in.lr_factor.value();
  for (auto& o : optimizers_) {
    if (device_learning_rates_) o->stage_learning_rates(in.lr_factor);
    o->stage_training_step(step);  // as the captured step's (Trainer::graphed_step)
    o->step(factor, step, apply);
  }
  if (trains_rows) pivotal_->after_optimizer_step(apply);
  mark("optimizer");
  s.read = StepRead::enqueue(grad_norm, apply, loss_sum);
  s.grad_norm = grad_norm, s.apply = apply;
  for (auto& o : optimizers_) o->zero_grad();
  after_update(in, s);
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
  // The step before this one is settled: its verdict picks this one's learning rates.
  const int64_t taken_before = guard_.accepted_steps() - s.accepted_at_issue;
  XLTUNE_CHECK(taken_before == 0 || (taken_before == 1 && s.behind_another), "trainer: step ", s.step, " was issued ",
               "with ", s.accepted_at_issue, " steps accepted and is settled with ", guard_.accepted_steps());
  if (taken_before == 1 && !s.learning_rates_if_taken.empty()) result.learning_rates = s.learning_rates_if_taken;
  if (applied)
    guard_.accept(result.grad_norm);
  else
    guard_.skip();
  result.skipped_in_a_row = guard_.skipped_in_a_row();
}

}  // namespace xltune
