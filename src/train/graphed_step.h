// Note [The step as a CUDA graph] (train/trainer.h): one batch shape's static inputs and outputs,
// and where its graph stands. Private to the Trainer (trainer.cc, trainer_graph.cc).
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <vector>

#include "train/trainer.h"

namespace xltune {

struct Trainer::GraphedStep {
  std::vector<int64_t> key;  // the shapes of the inputs
  int64_t id = 0;            // its graph's in the Trainer's StepCapture (kCuda)
  int64_t eager_steps = 0;   // warm-up steps run so far (on the capture stream with kCuda)
  bool captured = false;     // captured (kCuda), or past the step that would capture (kStatic)
  int64_t last_step = 0;     // the last training step of this shape (which to drop first)
  at::Tensor latent_mean, latent_logvar, add_time_ids, mask, latent_sample, noise, timesteps, context, pooled;
  at::Tensor spike_threshold;           // float64 []
  at::Tensor loss, grad_norm, apply, x0;  // the body's outputs
  std::vector<bool> footprint;            // what the captured backward reached (the reducer's)
  // The inputs, in graphed_step's order.
  std::array<at::Tensor*, 9> inputs() {
    return {&latent_mean, &latent_logvar, &add_time_ids, &mask, &latent_sample, &noise, &timesteps, &context, &pooled};
  }
};

}  // namespace xltune
