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
#include "train/autocast_scope.h"
#include "train/graphed_step.h"
#include "train/step_capture.h"
#include "train/trainer.h"

namespace xltune {

namespace {

// Each micro-batch is a graph of its own (Note [The step as a CUDA graph]): beyond this many the
// captures' time and the graphs' memory outweigh what they save.
constexpr size_t kMaxGraphedMicroBatches = 8;

}  // namespace

void Trainer::set_up_step_graph() {
  if (config_.step_graph == TrainerConfig::StepGraph::kCuda)
    XLTUNE_CHECK(device_.is_cuda(), "--cuda_graph true needs a CUDA device; this run trains on ", device_.str());
}

std::string Trainer::graph_blocker(const std::vector<StepBatch>& micro_batches, bool trains_rows) const {
  if (micro_batches.size() > kMaxGraphedMicroBatches)
    return "more than " + std::to_string(kMaxGraphedMicroBatches) + " micro-batches (a graph each)";
  if (trains_rows) return "the token rows train until the pivot (their encoders run in the step)";
  if (std::string why = reducer_->capture_blocker(); !why.empty()) return why;
  if (!device_learning_rates_) return "the foreach AdamW kernel";
  for (const auto& o : optimizers_)
    if (std::string why = o->capture_blocker(); !why.empty()) return why;
  return "";
}

void Trainer::graph_forward_backward(GraphedStep& g, size_t k) {
  GraphedMicroBatch& m = g.micro_batches[k];
  const at::Tensor x0 = (m.latent_mean + at::exp(0.5 * m.latent_logvar) * m.latent_sample) * scaling_factor_;
  mark("draws");
  mark("text");
  const at::Tensor x_t = schedule_.add_noise(x0, m.noise, m.timesteps);
  const at::Tensor target = schedule_.target(x0, m.noise, m.timesteps);
  const at::ScalarType dt = model_.unet->conv_in->weight.scalar_type();
  at::Tensor pred;
  {
    AutocastScope autocast(config_.autocast_bf16, /*cache=*/false);
    pred = model_.unet->forward(x_t.to(dt), m.timesteps, m.context.to(dt), m.pooled.to(dt), m.add_time_ids.to(dt));
  }
  const at::Tensor loss = loss_of(pred, target, m.mask, m.timesteps);
  mark("forward");
  // As the eager step: each micro-batch's loss weighted by its share, the gradients accumulated in
  // place (a later micro-batch's backward adds into the .grad an earlier one's left).
  const at::Tensor weighted = m.loss_weight == 1.0 ? loss : loss * m.loss_weight;
  weighted.backward();
  if (k == 0)
    g.loss = weighted.detach();
  else
    g.loss.add_(weighted.detach());
  m.x0 = x0.detach();
}

void Trainer::finish_backward() {
  reducer_->finish();
  for (auto& o : optimizers_) o->after_backward();
  mark("backward");
}

void Trainer::graph_update(GraphedStep& g, int64_t step, double lr_factor, bool norms_exchanged) {
  const at::Tensor grad_norm = norms_exchanged ? clip_to_exchanged_norms() : clip_gradients();
  mark("clip");
  const at::Tensor apply = guard_.verdict_on_device(grad_norm, g.spike_threshold);
  for (auto& o : optimizers_) o->step(lr_factor, step, apply);
  mark("optimizer");
  g.grad_norm = grad_norm, g.apply = apply;
}

void Trainer::drop_graphs_of(const GraphedStep& g) {
  if (capture_)
    for (int64_t i = 0; i < g.graph_count; ++i) capture_->drop(g.first_graph_id + i);
}

void Trainer::drop_step_graphs() {
  for (const auto& item : graphs_) drop_graphs_of(*item.second);
  graphs_.clear();
}

bool Trainer::optimizers_communicate_in_step() const {
  for (const auto& o : optimizers_)
    if (o->communicates_in_step()) return true;
  return false;
}

Trainer::GraphedStep& Trainer::graphed_step_for(const std::vector<int64_t>& key,
                                                const std::vector<std::array<at::Tensor, 9>>& inputs) {
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
    drop_graphs_of(*oldest->second);
    graphs_.erase(oldest);
  }
  auto g = std::make_unique<GraphedStep>();  // a new shape: its own buffers, warm-up and graphs
  g->key = key;
  int64_t samples = 0;
  for (const auto& in : inputs) samples += in[0].size(0);
  g->micro_batches.resize(inputs.size());
  for (size_t k = 0; k < inputs.size(); ++k) {
    GraphedMicroBatch& m = g->micro_batches[k];
    const std::array<at::Tensor*, 9> slots = m.inputs();
    for (size_t i = 0; i < inputs[k].size(); ++i)
      *slots[i] = at::empty_like(inputs[k][i], at::MemoryFormat::Contiguous);
    m.loss_weight = inputs.size() == 1 ? 1.0 : static_cast<double>(inputs[k][0].size(0)) / static_cast<double>(samples);
  }
  g->spike_threshold = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device_));
  // One graph for the whole step where it can be (one micro-batch, no reduction to run between);
  // else one per micro-batch, one for the update, and one for the local norms where the norm is
  // exchanged between ranks before the update.
  const bool whole = inputs.size() == 1 && !reducer_->communicates() && !optimizers_communicate_in_step();
  g->graph_count = whole ? 1 : static_cast<int64_t>(inputs.size()) + 1 + (optimizers_communicate_in_step() ? 1 : 0);
  g->first_graph_id = next_graph_id_;
  next_graph_id_ += g->graph_count;
  return *graphs_.emplace(key, std::move(g)).first->second;
}

// Note [The step as a CUDA graph]: with one micro-batch and nothing exchanged between ranks, the
// whole step is one segment (one graph). Otherwise each micro-batch's forward and backward is a
// segment, and the update one more: where gradients are exchanged, the reduction runs eagerly
// between the last micro-batch and the update; without, it is the update's start. Where an
// optimizer exchanges in its step (ZeRO-1), the update is two segments: the local norms, then
// (after the norm's all-reduce) clipping and the update, its all-gathers started after it.
std::vector<Trainer::GraphSegment> Trainer::graph_segments(GraphedStep& g, int64_t step, double lr_factor) {
  // After the update: a replay's host bookkeeping, then what the optimizers send (ZeRO-1's all-gathers).
  const auto after_update = [this](GraphRun run) {
    if (run == GraphRun::kReplay && config_.step_graph == TrainerConfig::StepGraph::kCuda)
      for (auto& o : optimizers_) o->replayed_step();
    for (auto& o : optimizers_) o->start_parameter_exchange();
  };
  std::vector<GraphSegment> segments;
  if (g.graph_count == 1) {
    segments.push_back({[this, &g, step, lr_factor] {
                          graph_forward_backward(g, 0);
                          finish_backward();
                          graph_update(g, step, lr_factor, /*norms_exchanged=*/false);
                        },
                        {"draws", "text", "forward", "backward", "clip", "optimizer"},
                        after_update});
    return segments;
  }
  const bool exchange_norms = optimizers_communicate_in_step();
  const bool split = reducer_->communicates() || exchange_norms;
  for (size_t k = 0; k < g.micro_batches.size(); ++k)
    segments.push_back({[this, &g, k] { graph_forward_backward(g, k); }, {"draws", "text", "forward"}, {}});
  if (split) segments.back().after = [this, &g](GraphRun run) { reduce_between_segments(g, run); };
  if (exchange_norms) {
    segments.push_back({[this] {
                          for (auto& o : optimizers_) o->local_grad_norms();
                        },
                        {},
                        [this](GraphRun) {
                          for (auto& o : optimizers_) o->exchange_grad_norms();
                        }});
  }
  segments.push_back({[this, &g, step, lr_factor, split, exchange_norms] {
                        if (!split) finish_backward();
                        graph_update(g, step, lr_factor, exchange_norms);
                      },
                      split ? std::vector<const char*>{"clip", "optimizer"}
                            : std::vector<const char*>{"backward", "clip", "optimizer"},
                      after_update});
  return segments;
}

void Trainer::run_graphed(GraphedStep& g, int64_t step, double lr_factor) {
  const std::vector<GraphSegment> segments = graph_segments(g, step, lr_factor);
  XLTUNE_CHECK(static_cast<int64_t>(segments.size()) == g.graph_count, "trainer: ", segments.size(),
               " segments for ", g.graph_count, " graphs");
  if (config_.step_graph == TrainerConfig::StepGraph::kCuda && !capture_) capture_ = StepCapture::make(device_);
  const GraphRun run =
      g.eager_steps < kGraphWarmupSteps ? GraphRun::kWarmUp : (g.captured ? GraphRun::kReplay : GraphRun::kCapture);
  ++graphed_steps_;
  // ZeRO-1's all-gathers of the step before, landed: the forward's waits for them (Note [Sharded
  // optimizer state]) are then no-ops, which a graph can hold.
  wait_parameters();
  // A captured backward runs with the sync off where the reduction runs between the segments:
  // its hooks only note what it reached. The optimizers' exchanges after their update wait for
  // the graph too.
  reducer_->set_gradient_sync(!reducer_->communicates());
  for (auto& o : optimizers_) {
    o->set_gradient_sync(!o->communicates_in_step());
    o->defer_parameter_exchange(true);
  }
  for (size_t k = 0; k < segments.size(); ++k) {
    run_segment(segments[k], g.first_graph_id + static_cast<int64_t>(k), run, step);
    if (segments[k].after) segments[k].after(run);
  }
  for (auto& o : optimizers_) o->defer_parameter_exchange(false);
  count_graphed_run(g, run, step);
}

void Trainer::run_segment(const GraphSegment& segment, int64_t graph_id, GraphRun run, int64_t step) {
  const bool cuda = config_.step_graph == TrainerConfig::StepGraph::kCuda;
  if (run == GraphRun::kWarmUp || !cuda) {
    cuda ? capture_->run_eager(segment.body) : segment.body();  // kStatic: every step so
    return;
  }
  if (run == GraphRun::kReplay) {
    capture_->replay(graph_id);
    for (const char* phase : segment.phases) mark(phase);  // the eager body marks its own
    return;
  }
  capturing_ = true;
  try {
    capture_->capture_and_replay(graph_id, segment.body);
  } catch (const std::exception& e) {
    // Something in the step cannot be captured (a host read, an uncapturable kernel): the run
    // ends here with what failed and the way around it.
    capturing_ = false;
    XLTUNE_FAIL("step ", step, ": capturing the step as a CUDA graph failed (--cuda_graph false trains without it): ",
                e.what());
  }
  capturing_ = false;
}

// Between the segments: the reduction, eagerly, of what the micro-batches' backwards reached.
void Trainer::reduce_between_segments(GraphedStep& g, GraphRun run) {
  if (run == GraphRun::kCapture) g.footprint = reducer_->backward_footprint();
  if (run == GraphRun::kReplay && config_.step_graph == TrainerConfig::StepGraph::kCuda) {
    reducer_->replayed_backward(g.footprint);
    for (auto& o : optimizers_) o->replayed_backward();
  }
  reducer_->set_gradient_sync(true);
  for (auto& o : optimizers_) o->set_gradient_sync(true);
  finish_backward();
}

void Trainer::count_graphed_run(GraphedStep& g, GraphRun run, int64_t step) {
  const bool cuda = config_.step_graph == TrainerConfig::StepGraph::kCuda;
  if (run == GraphRun::kWarmUp) {
    ++g.eager_steps;
  } else if (run == GraphRun::kCapture) {
    g.captured = true;
    ++graph_captures_;
    if (!cuda) return;
    const size_t k = g.micro_batches.size();
    const bool norms = optimizers_communicate_in_step();
    const std::string how =
        g.graph_count == 1 ? "a CUDA graph"
                           : std::to_string(g.graph_count) + " CUDA graphs (" +
                                 (k == 1 ? std::string("forward and backward") : std::to_string(k) + " micro-batches") +
                                 (norms ? ", the local gradient norms" : "") + ", then the update" +
                                 (reducer_->communicates() || norms ? ", the gradients reduced between" : "") +
                                 (norms ? ", the norm all-reduced and the parameters all-gathered eagerly)" : ")");
    log_info("step ", step, ": the step is captured as ", how, " (batch ", g.micro_batches[0].latent_mean.size(0),
             k > 1 ? " in the first micro-batch" : "", ", latents ", xltune::str(g.micro_batches[0].latent_mean.sizes()),
             "); later steps of this shape replay it");
  } else {
    ++graph_replays_;  // the optimizers' host side: the update segment's after (graph_segments)
  }
}

void Trainer::copy_in(GraphedStep& g, const std::vector<std::array<at::Tensor, 9>>& inputs, const StepInputs& in) {
  at::NoGradGuard no_grad;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const std::array<at::Tensor*, 9> slots = g.micro_batches[k].inputs();
    for (size_t i = 0; i < inputs[k].size(); ++i) slots[i]->copy_(inputs[k][i], /*non_blocking=*/true);
  }
  if (in.spike_threshold.defined())
    g.spike_threshold.copy_(in.spike_threshold);
  else
    g.spike_threshold.fill_(guard_.spike_threshold());
}

Trainer::InFlightStep Trainer::graphed_step(int64_t step, const std::vector<StepBatch>& micro_batches,
                                            const StepInputs& in) {
  InFlightStep s;
  s.step = step;
  StepResult& result = s.result;
  std::vector<std::array<at::Tensor, 9>> inputs;
  std::vector<at::Tensor> noises, timesteps;
  std::vector<int64_t> key = {static_cast<int64_t>(micro_batches.size())};
  for (const StepBatch& batch : micro_batches) {
    const StepDraws d = draw(step, batch);
    const std::array<at::Tensor, 3> draws =
        draws_to_device({d.latent_sample, d.noise, d.timesteps}, device_, !device_.is_cpu());
    auto [context, pooled] = text_conditioning(batch, /*trains_rows=*/false, &result.text_encoders_ran);
    inputs.push_back({batch.latent_mean, batch.latent_logvar, batch.add_time_ids, batch.mask, draws[0], draws[1],
                      draws[2], context, pooled});
    noises.push_back(d.noise), timesteps.push_back(d.timesteps);
    for (const auto& t : inputs.back()) {
      key.push_back(t.dim());
      for (int64_t n : t.sizes()) key.push_back(n);
    }
  }
  GraphedStep& g = graphed_step_for(key, inputs);
  g.last_step = step;
  copy_in(g, inputs, in);
  const double factor = in.lr_factor.if_skipped;  // the staged one's check (Optimizer::stage_learning_rates)
  for (auto& o : optimizers_) {
    o->stage_learning_rates(in.lr_factor);
    o->stage_training_step(step);  // outside the capture: what the update's rounding reads
  }
  reducer_->before_backward();
  for (auto& o : optimizers_) {
    o->before_backward();
    o->set_gradient_sync(true);
  }
  run_graphed(g, step, factor);
  s.read = StepRead::enqueue(g.grad_norm, g.apply, g.loss);  // copied out before the next replay
  s.grad_norm = g.grad_norm, s.apply = g.apply;  // read by the next step's inputs before its replay
  // The next step of this shape rewrites each x0: copied (cat copies).
  std::vector<at::Tensor> x0s;
  for (const auto& m : g.micro_batches) x0s.push_back(m.x0);
  result.x0 = x0s.size() == 1 ? x0s[0].clone() : at::cat(x0s);
  result.noise = noises.size() == 1 ? noises[0] : at::cat(noises);
  result.timesteps = timesteps.size() == 1 ? timesteps[0] : at::cat(timesteps);
  for (auto& o : optimizers_) o->zero_grad();
  after_update(in, s);
  return s;
}

}  // namespace xltune
