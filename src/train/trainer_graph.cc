// The Trainer's captured step: Note [The step as a CUDA graph] (train/trainer.h).
#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/log.h"
#include "dist/gradient_reducer.h"
#include "train/graphed_step.h"
#include "train/step_capture.h"
#include "train/trainer.h"

namespace xltune {

void Trainer::set_up_step_graph() {
  if (config_.step_graph == TrainerConfig::StepGraph::kCuda)
    XLTUNE_CHECK(device_.is_cuda(), "--cuda_graph true needs a CUDA device; this run trains on ", device_.str());
}

std::string Trainer::graph_blocker(const std::vector<StepBatch>& micro_batches, bool trains_rows) const {
  if (micro_batches.size() != 1) return "gradient accumulation (micro-batches)";
  if (trains_rows) return "the token rows train until the pivot (their encoders run in the step)";
  if (std::string why = reducer_->capture_blocker(); !why.empty()) return why;
  if (config_.autocast_bf16) return "bf16 autocast";
  if (!device_learning_rates_) return "the foreach AdamW kernel";
  for (const auto& o : optimizers_)
    if (std::string why = o->capture_blocker(); !why.empty()) return why;
  return "";
}

void Trainer::graph_forward_backward(GraphedStep& g) {
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
  g.loss = loss.detach(), g.x0 = x0.detach();
}

void Trainer::finish_backward() {
  reducer_->finish();
  for (auto& o : optimizers_) o->after_backward();
  mark("backward");
}

void Trainer::graph_update(GraphedStep& g, int64_t step, double lr_factor) {
  const at::Tensor grad_norm = clip_gradients();
  mark("clip");
  const at::Tensor apply = guard_.verdict_on_device(grad_norm, g.spike_threshold);
  for (auto& o : optimizers_) o->step(lr_factor, step, apply);
  mark("optimizer");
  g.grad_norm = grad_norm, g.apply = apply;
}

void Trainer::drop_step_graphs() {
  if (capture_)
    for (const auto& item : graphs_) capture_->drop(item.second->id);
  graphs_.clear();
}

Trainer::GraphedStep& Trainer::graphed_step_for(const std::vector<int64_t>& key,
                                                const std::array<at::Tensor, 9>& inputs) {
  auto it = graphs_.find(key);
  if (it != graphs_.end()) return *it->second;
  if (static_cast<int64_t>(graphs_.size()) >= std::max<int64_t>(config_.max_graphed_shapes, 1)) {
    auto oldest = graphs_.begin();
    for (auto i = graphs_.begin(); i != graphs_.end(); ++i)
      if (i->second->last_step < oldest->second->last_step) oldest = i;
    if (!graph_eviction_logged_)
      log_info("more than ", config_.max_graphed_shapes, " batch shapes: the step graph of the shape used ",
               "longest ago is dropped for each new one (and captured again when it comes back)");
    graph_eviction_logged_ = true;
    if (capture_) capture_->drop(oldest->second->id);
    graphs_.erase(oldest);
  }
  auto g = std::make_unique<GraphedStep>();  // a new shape: its own buffers, warm-up and graph
  g->key = key;
  g->id = next_graph_id_++;
  const std::array<at::Tensor*, 9> slots = g->inputs();
  for (size_t k = 0; k < inputs.size(); ++k) *slots[k] = at::empty_like(inputs[k], at::MemoryFormat::Contiguous);
  g->spike_threshold = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device_));
  return *graphs_.emplace(key, std::move(g)).first->second;
}

// Note [The step as a CUDA graph]: with a reducer that exchanges nothing the whole step is one
// segment (one graph); with one that does, two, and the reduction runs eagerly between them:
// forward and backward (the hooks only noting what backward reached), then finish(), then the
// clipping and the update. Segment k of shape g is graph 2 g.id + k in the StepCapture.
void Trainer::run_graphed(GraphedStep& g, int64_t step, double lr_factor) {
  const bool split = reducer_->communicates();
  std::vector<std::function<void()>> segments;
  if (split) {
    segments.push_back([this, &g] { graph_forward_backward(g); });
    segments.push_back([this, &g, step, lr_factor] { graph_update(g, step, lr_factor); });
  } else {
    segments.push_back([this, &g, step, lr_factor] {
      graph_forward_backward(g);
      finish_backward();
      graph_update(g, step, lr_factor);
    });
  }
  const bool cuda = config_.step_graph == TrainerConfig::StepGraph::kCuda;
  if (cuda && !capture_) capture_ = StepCapture::make(device_);
  enum class Run { kWarmUp, kCapture, kReplay };
  const Run run = g.eager_steps < kGraphWarmupSteps ? Run::kWarmUp : (g.captured ? Run::kReplay : Run::kCapture);
  ++graphed_steps_;
  reducer_->set_gradient_sync(!split);
  for (size_t k = 0; k < segments.size(); ++k) {
    const int64_t id = 2 * g.id + static_cast<int64_t>(k);
    if (run == Run::kWarmUp || !cuda) {
      cuda ? capture_->run_eager(segments[k]) : segments[k]();  // kStatic: every step so
    } else if (run == Run::kCapture) {
      capturing_ = true;
      try {
        capture_->capture_and_replay(id, segments[k]);
      } catch (const std::exception& e) {
        // Something in the step cannot be captured (a host read, an uncapturable kernel): the
        // run ends here with what failed and the way around it.
        capturing_ = false;
        XLTUNE_FAIL("step ", step, ": capturing the step as a CUDA graph failed (--cuda_graph false trains without ",
                    "it): ", e.what());
      }
      capturing_ = false;
    } else {
      capture_->replay(id);
      // The phases the replay ran, as the eager body marks them (the reduction marks its own).
      static const std::vector<const char*> kBeforeReduction = {"draws", "text", "forward"};
      static const std::vector<const char*> kAfterReduction = {"clip", "optimizer"};
      static const std::vector<const char*> kWhole = {"draws", "text", "forward", "backward", "clip", "optimizer"};
      for (const char* phase : !split ? kWhole : k == 0 ? kBeforeReduction : kAfterReduction) mark(phase);
    }
    if (!split || k > 0) continue;
    // Between the segments: the reduction, eagerly, of what backward reached.
    if (run == Run::kCapture) g.footprint = reducer_->backward_footprint();
    if (run == Run::kReplay && cuda) reducer_->replayed_backward(g.footprint);
    reducer_->set_gradient_sync(true);
    finish_backward();
  }
  if (run == Run::kWarmUp) {
    ++g.eager_steps;
  } else if (run == Run::kCapture) {
    g.captured = true;
    ++graph_captures_;
    if (cuda)
      log_info("step ", step, ": the step is captured as ",
               split ? "two CUDA graphs (the gradients reduced between)" : "a CUDA graph", " (batch ",
               g.latent_mean.size(0), ", latents ", xltune::str(g.latent_mean.sizes()),
               "); later steps of this shape replay it");
  } else {
    if (cuda)
      for (auto& o : optimizers_) o->replayed_step();
    ++graph_replays_;
  }
}

Trainer::InFlightStep Trainer::graphed_step(int64_t step, const StepBatch& batch, const StepInputs& in) {
  const int64_t b = batch.latent_mean.size(0);
  XLTUNE_CHECK(b >= 1 && static_cast<int64_t>(batch.positions.size()) == b, "trainer: ", batch.positions.size(),
               " positions for a batch of ", b);
  InFlightStep s;
  s.step = step;
  StepResult& result = s.result;
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
  GraphedStep& g = graphed_step_for(key, inputs);
  g.last_step = step;
  {
    at::NoGradGuard no_grad;
    const std::array<at::Tensor*, 9> slots = g.inputs();
    for (size_t k = 0; k < inputs.size(); ++k) slots[k]->copy_(inputs[k], /*non_blocking=*/true);
    if (in.spike_threshold.defined())
      g.spike_threshold.copy_(in.spike_threshold);
    else
      g.spike_threshold.fill_(guard_.spike_threshold());
  }
  const double factor = in.lr_factor.if_skipped;  // the staged one's check (Optimizer::stage_learning_rates)
  for (auto& o : optimizers_) o->stage_learning_rates(in.lr_factor);
  reducer_->before_backward();
  for (auto& o : optimizers_) {
    o->before_backward();
    o->set_gradient_sync(true);
  }
  run_graphed(g, step, factor);
  s.read = StepRead::enqueue(g.grad_norm, g.apply, g.loss);  // copied out before the next replay
  s.grad_norm = g.grad_norm, s.apply = g.apply;  // read by the next step's inputs before its replay
  result.x0 = g.x0.clone();  // the next step of this shape rewrites g.x0
  result.noise = d.noise;
  result.timesteps = d.timesteps;
  for (auto& o : optimizers_) o->zero_grad();
  after_update(in, s);
  return s;
}

}  // namespace xltune
