// Note [The step as a CUDA graph] (train/trainer.h): one batch shape's static inputs and outputs,
// and its graph. Private to the Trainer (trainer.cc, trainer_graph.cc).
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <memory>
#include <vector>

#include "train/step_capture.h"
#include "train/trainer.h"

namespace xltune {

struct Trainer::GraphedStep {
  std::vector<int64_t> key;  // the shapes of the inputs
  int64_t eager_steps = 0;   // run on the capture stream so far (kCuda) before capture
  at::Tensor latent_mean, latent_logvar, add_time_ids, mask, latent_sample, noise, timesteps, context, pooled;
  at::Tensor spike_threshold;           // float64 []
  at::Tensor loss, grad_norm, apply, x0;  // the body's outputs
  std::unique_ptr<StepCapture> capture;   // kCuda only
  // The inputs, in graphed_step's order.
  std::array<at::Tensor*, 9> inputs() {
    return {&latent_mean, &latent_logvar, &add_time_ids, &mask, &latent_sample, &noise, &timesteps, &context, &pooled};
  }
};

}  // namespace xltune
