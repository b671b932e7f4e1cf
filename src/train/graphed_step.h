// Note [The step as a CUDA graph] (train/trainer.h): one step shape's static inputs and outputs,
// the segments its body is captured in, and where its graphs stand. Private to the Trainer
// (trainer.cc, trainer_graph.cc).
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <functional>
#include <vector>

#include "train/trainer.h"

namespace xltune {

// One micro-batch's static inputs, its share of the step's loss and its x0.
struct Trainer::GraphedMicroBatch {
  at::Tensor latent_mean, latent_logvar, add_time_ids, mask, latent_sample, noise, timesteps, context, pooled;
  double loss_weight = 1;  // Note [Gradient accumulation]: its samples over the step's
  at::Tensor x0;           // an output
  // The inputs, in graphed_step's order.
  std::array<at::Tensor*, 9> inputs() {
    return {&latent_mean, &latent_logvar, &add_time_ids, &mask, &latent_sample, &noise, &timesteps, &context, &pooled};
  }
};

struct Trainer::GraphedStep {
  std::vector<int64_t> key;    // the micro-batch count, then the shapes of their inputs
  int64_t first_graph_id = 0;  // its graphs' ids in the Trainer's StepCapture (kCuda): a run of
  int64_t graph_count = 0;     // one per segment
  int64_t eager_steps = 0;     // warm-up steps run so far (on the capture stream with kCuda)
  bool captured = false;       // captured (kCuda), or past the step that would capture (kStatic)
  int64_t last_step = 0;       // the last training step of this shape (which to drop first)
  std::vector<GraphedMicroBatch> micro_batches;
  at::Tensor spike_threshold;             // float64 []
  at::Tensor loss, grad_norm, apply;      // the body's outputs (the loss summed over micro-batches)
  std::vector<bool> footprint;            // what the captured backwards reached (the reducer's)
};

// A part of the step captured as one graph: its work, the phases a replay of it stands for (the
// eager body marks its own), and what runs eagerly after it, if anything (the exchanges between
// ranks; a replay's host bookkeeping).
struct Trainer::GraphSegment {
  std::function<void()> body;
  std::vector<const char*> phases;
  std::function<void(GraphRun)> after;
};

}  // namespace xltune
