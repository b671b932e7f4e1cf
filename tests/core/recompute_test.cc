// core/recompute.h under autocast: a block trained for a few steps with its forward recomputed
// in backward must train exactly as the plain block does. Autocast caches its casts of weights
// process-wide; casts made by the recompute in backward, if cached, are used stale by the next
// forward once the optimizer has changed the weights (the GPU-readiness review's R1). CPU bf16
// autocast has the same cache as CUDA's, so a CPU shows it.
#include "core/recompute.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

namespace xltune {
namespace {

struct StepRecord {
  std::vector<float> losses;
  std::vector<at::Tensor> grads;
};

// Three SGD steps of a two-layer block under CPU bf16 autocast; the autocast scope ends (and
// clears its cache, as the trainer's does) before backward, as in Trainer::step.
StepRecord train(bool checkpoint) {
  torch::manual_seed(0);
  at::Tensor w1 = (torch::randn({16, 16}) * 0.3).requires_grad_();
  at::Tensor w2 = (torch::randn({16, 16}) * 0.3).requires_grad_();
  const at::Tensor x = torch::randn({4, 16}), cond = torch::randn({4, 16});
  const TensorFn fn = [&](const at::Tensor& a, const at::Tensor& b) {
    return at::linear(at::gelu(at::linear(a, w1) + b), w2);
  };
  StepRecord r;
  for (int step = 0; step < 3; ++step) {
    at::autocast::set_autocast_enabled(at::kCPU, true);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::Tensor y = checkpoint ? recompute_in_backward(fn, x, cond) : fn(x, cond);
    at::Tensor loss = y.to(at::kFloat).pow(2).mean();
    at::autocast::set_autocast_enabled(at::kCPU, false);
    at::autocast::clear_cache();
    loss.backward();
    r.losses.push_back(loss.item<float>());
    r.grads.push_back(w1.grad().clone());
    r.grads.push_back(w2.grad().clone());
    torch::NoGradGuard no_grad;
    for (at::Tensor* w : {&w1, &w2}) {
      w->sub_(w->grad() * 0.5);  // large enough that every bf16 cast of the weights changes
      w->mutable_grad().zero_();
    }
  }
  at::autocast::clear_cache();
  return r;
}

TEST(RecomputeAutocast, CheckpointedStepsEqualPlainStepsUnderBf16Autocast) {
  const StepRecord plain = train(false), recomputed = train(true);
  ASSERT_TRUE(at::autocast::is_autocast_cache_enabled());  // the recompute restored the flag
  // The same ops on the same inputs on one thread: bit for bit, every step.
  for (size_t i = 0; i < plain.losses.size(); ++i) EXPECT_EQ(plain.losses[i], recomputed.losses[i]) << "step " << i;
  for (size_t i = 0; i < plain.grads.size(); ++i)
    EXPECT_TRUE(at::equal(plain.grads[i], recomputed.grads[i])) << "gradient " << i % 2 << " of step " << i / 2;
  EXPECT_NE(plain.losses[0], plain.losses[2]);  // the weights did change between the steps
}

}  // namespace
}  // namespace xltune
