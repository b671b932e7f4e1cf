// The Trainer's captured step: Note [The step as a CUDA graph] (train/trainer.h).
#include <ATen/ATen.h>

#include <array>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/log.h"
#include "dist/gradient_reducer.h"
#include "train/graphed_step.h"
#include "train/trainer.h"

namespace xltune {

void Trainer::set_up_step_graph() {
  if (config_.step_graph == TrainerConfig::StepGraph::kCuda)
    XLTUNE_CHECK(device_.is_cuda(), "--cuda_graph true needs a CUDA device; this run trains on ", device_.str());
  // Note [The step as a CUDA graph]: every step then reads the learning rates from the device, so
  // the eager steps and the replays use one form of the kernel.
  if (config_.step_graph != TrainerConfig::StepGraph::kOff && config_.adamw_kernel == AdamWKernel::kFused) {
    for (auto& o : optimizers_) o->use_device_learning_rates();
    device_learning_rates_ = true;
  }
}

std::string Trainer::graph_blocker(const std::vector<StepBatch>& micro_batches, bool trains_rows) const {
  if (micro_batches.size() != 1) return "gradient accumulation (micro-batches)";
  if (trains_rows) return "the token rows train until the pivot (their encoders run in the step)";
  if (reducer_->communicates()) return "the gradients are reduced over ranks";
  if (config_.autocast_bf16) return "bf16 autocast";
  if (!device_learning_rates_) return "the foreach AdamW kernel";
  for (const auto& o : optimizers_)
    if (std::string why = o->capture_blocker(); !why.empty()) return why;
  return "";
}

void Trainer::graph_body(int64_t step, double lr_factor) {
  GraphedStep& g = *graphed_;
  const at::Tensor x0 = (g.latent_mean + at::exp(0.5 * g.latent_logvar) * g.latent_sample) * scaling_factor_;
  mark("draws");
  mark("text");
  const at::Tensor x_t = schedule_.add_noise(x0, g.noise, g.timesteps);
  const at::Tensor target = schedule_.target(x0, g.noise, g.timesteps);
  const at::ScalarType dt = model_.unet->conv_in->weight.scalar_type();
  const at::Tensor pred =
      model_.unet->forward(x_t.to(dt), g.timesteps, g.context.to(dt), g.pooled.to(dt), g.add_time_ids.to(dt));
  const at::Tensor loss = loss_of(pred, target, g.mask, g.timesteps);
  mark("forward");
  loss.backward();
  reducer_->finish();
  for (auto& o : optimizers_) o->after_backward();
  mark("backward");
  const at::Tensor grad_norm = clip_gradients();
  mark("clip");
  const at::Tensor apply = guard_.verdict_on_device(grad_norm, g.spike_threshold);
  for (auto& o : optimizers_) o->step(lr_factor, step, apply);
  mark("optimizer");
  g.loss = loss.detach(), g.grad_norm = grad_norm, g.apply = apply, g.x0 = x0.detach();
}

StepResult Trainer::graphed_step(int64_t step, const StepBatch& batch) {
  const int64_t b = batch.latent_mean.size(0);
  XLTUNE_CHECK(b >= 1 && static_cast<int64_t>(batch.positions.size()) == b, "trainer: ", batch.positions.size(),
               " positions for a batch of ", b);
  StepResult result;
  const StepDraws d = draw(step, batch);
  const std::array<at::Tensor, 3> draws =
      draws_to_device({d.latent_sample, d.noise, d.timesteps}, device_, !device_.is_cpu());
  auto [context, pooled] = text_conditioning(batch, /*trains_rows=*/false, &result.text_encoders_ran);
  const std::array<at::Tensor, 9> inputs = {batch.latent_mean, batch.latent_logvar, batch.add_time_ids, batch.mask,
                                          draws[0], draws[1], draws[2], context, pooled};
  std::vector<int64_t> key;
  for (const auto& t : inputs) {
    key.push_back(t.dim());
    for (int64_t n : t.sizes()) key.push_back(n);
  }
  if (!graphed_ || graphed_->key != key) {  // a new shape: its own buffers, warm-up and graph
    graphed_ = std::make_unique<GraphedStep>();
    GraphedStep& g = *graphed_;
    g.key = key;
    const std::array<at::Tensor*, 9> slots = g.inputs();
    for (size_t k = 0; k < inputs.size(); ++k) *slots[k] = at::empty_like(inputs[k], at::MemoryFormat::Contiguous);
    g.spike_threshold = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device_));
    if (config_.step_graph == TrainerConfig::StepGraph::kCuda) g.capture = StepCapture::make(device_);
  }
  GraphedStep& g = *graphed_;
  {
    at::NoGradGuard no_grad;
    const std::array<at::Tensor*, 9> slots = g.inputs();
    for (size_t k = 0; k < inputs.size(); ++k) slots[k]->copy_(inputs[k], /*non_blocking=*/true);
    g.spike_threshold.fill_(guard_.spike_threshold());
  }
  const double factor = config_.schedule.factor_for_step(guard_.accepted_steps() + 1);
  for (auto& o : optimizers_) o->stage_learning_rates(factor);
  reducer_->before_backward();
  reducer_->set_gradient_sync(true);
  for (auto& o : optimizers_) {
    o->before_backward();
    o->set_gradient_sync(true);
  }
  const auto body = [this, step, factor] { graph_body(step, factor); };
  ++graphed_steps_;
  if (!g.capture) {
    body();  // kStatic
  } else if (g.eager_steps < kGraphWarmupSteps) {
    g.capture->run_eager(body);
    ++g.eager_steps;
  } else if (!g.capture->captured()) {
    capturing_ = true;
    try {
      g.capture->capture_and_replay(body);
    } catch (...) {
      capturing_ = false;
      throw;
    }
    capturing_ = false;
    ++graph_captures_;
    log_info("step ", step, ": the step is captured as a CUDA graph (batch ", b, ", latents ",
             xltune::str(g.latent_mean.sizes()), "); later steps of this shape replay it");
  } else {
    g.capture->replay();
    for (auto& o : optimizers_) o->replayed_step();
    ++graph_replays_;
    for (const char* phase : {"draws", "text", "forward", "backward", "clip", "optimizer"}) mark(phase);
  }
  settle(step, g.grad_norm, g.apply, g.loss, result);
  result.x0 = g.x0.clone();  // the next step rewrites g.x0
  result.noise = d.noise;
  result.timesteps = d.timesteps;
  for (auto& o : optimizers_) {
    o->zero_grad();
    o->add_learning_rates(factor, result.learning_rates);
  }
  return result;
}

}  // namespace xltune
