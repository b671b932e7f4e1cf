// The fixtures of the ZeRO-1 tests (zero_optimizer_test.cc, zero_optimizer_comm_test.cc): a small
// net of five odd-sized tensors, ranks as threads (dist/thread_group.h) each with its own net and
// sharded optimizer, and the reference, one AdamW on the mean of the ranks' gradients.
#pragma once

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "dist/communicator.h"
#include "test_util.h"
#include "train/adamw.h"
#include "train/zero_optimizer.h"

namespace xltune::zero_test {

// Five tensors whose sizes (40, 8, 48, 6, 18 values) do not divide by 2 or 3 ranks evenly.
// Layer i is forward block i (Note [Forward block hook]): before_layer(i), if set, runs before it.
struct Net {
  std::vector<std::string> names{"l0.weight", "l0.bias", "l1.weight", "l1.bias", "l2.weight"};
  std::vector<int> blocks{0, 0, 1, 1, 2};
  std::vector<at::Tensor> params;
  bool use_last = true;
  std::function<void(int)> before_layer;
  Net() {
    at::Generator g = at::make_generator<at::CPUGeneratorImpl>(5);  // own: the ranks run at once
    for (auto shape : {std::vector<int64_t>{8, 5}, {8}, {6, 8}, {6}, {3, 6}})
      params.push_back((at::randn(shape, g) * 0.3).requires_grad_(true));
  }
  at::Tensor loss(const at::Tensor& x) const {
    const auto enter = [&](int layer) {
      if (before_layer) before_layer(layer);
    };
    enter(0);
    at::Tensor h = at::tanh(at::linear(x, params[0], params[1]));
    enter(1);
    h = at::relu(at::linear(h, params[2], params[3]));
    if (!use_last) return h.pow(2).mean();
    enter(2);
    return at::linear(h, params[4]).pow(2).mean();
  }
};

inline at::Tensor input_of(int rank, int step) {
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(100 * step + rank);
  return at::randn({7, 5}, g);
}

inline const AdamWHyper kHyper{2e-2, 0.9, 0.999, 1e-8, 1e-2};

using Grads = std::vector<at::Tensor>;

// One process, one AdamW, on the mean of the ranks' gradients (each computed on its own, then
// summed in rank order, as the thread group's collectives sum: Adam turns an ulp on a near-zero
// gradient into a visible step, so the reference must add in the same order).
struct Reference {
  Net net;
  AdamW adamw;
  explicit Reference(AdamWKernel kernel = AdamWKernel::kForeach)
      : adamw({AdamWGroup{"unet", kHyper, net.names, net.params, false}}, at::kFloat, 0, kernel) {}
  void step(int s, const std::vector<Grads>& rank_grads) {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < net.params.size(); ++i) {
      at::Tensor sum = rank_grads[0][i].clone();
      for (size_t r = 1; r < rank_grads.size(); ++r) sum.add_(rank_grads[r][i]);
      net.params[i].mutable_grad() = sum.div_(static_cast<double>(rank_grads.size()));
    }
    adamw.step(1.0, s);
    adamw.zero_grad();
  }
  void copy_params_from(const Net& other) {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < net.params.size(); ++i) net.params[i].copy_(other.params[i]);
  }
};

struct Rank {
  Net net;
  std::unique_ptr<ZeroOptimizer> zero;
};

// The gradient of rank r's loss at `net`'s parameters, computed afresh in plain tensors.
inline Grads fresh_grads(const Net& net, int rank, int step) {
  Net copy;
  {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < copy.params.size(); ++i) copy.params[i].copy_(net.params[i]);
  }
  copy.use_last = net.use_last;
  copy.loss(input_of(rank, step)).backward();
  Grads g;
  for (const auto& p : copy.params) g.push_back(p.grad().clone());
  return g;
}

// Runs `body(rank)` on `world` threads and rethrows the first failure. Each rank computes with
// one intra-op thread: ranks running at once otherwise split the machine's threads between their
// reductions in whatever way the scheduler gives them, and a gradient's rounding then depends on
// it (an AdamW step amplifies that to ~5e-6 where a gradient nearly cancels). With one thread each,
// every rank's arithmetic is the same every run, so the comparison can be exact.
inline void on_ranks(int world, const std::function<void(int)>& body) {
  const int threads_before = at::get_num_threads();
  std::vector<std::thread> threads;
  std::vector<std::string> errors(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      at::set_num_threads(1);
      try {
        body(r);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  at::set_num_threads(threads_before);
  for (const auto& e : errors) ASSERT_TRUE(e.empty()) << e;
}

// `world` ranks with their own nets and sharded optimizers (small buckets: several per run).
inline std::vector<Rank> make_ranks(const std::vector<std::shared_ptr<Communicator>>& comms,
                             at::ScalarType state_dtype = at::kFloat, int64_t bucket_bytes = 100,
                             int64_t first_bucket_bytes = 40, AdamWKernel kernel = AdamWKernel::kForeach) {
  std::vector<Rank> ranks(comms.size());
  for (size_t r = 0; r < comms.size(); ++r)
    ranks[r].zero = std::make_unique<ZeroOptimizer>(ranks[r].net.names, ranks[r].net.params, kHyper, *comms[r],
                                                    state_dtype, 7, bucket_bytes, first_bucket_bytes, at::kFloat,
                                                    at::kFloat, kernel);
  return ranks;
}

// One step on every rank; returns each rank's gradients, computed afresh at its parameters.
inline std::vector<Grads> step_ranks(std::vector<Rank>& ranks, int s) {
  std::vector<Grads> fresh(ranks.size());
  on_ranks(static_cast<int>(ranks.size()), [&](int r) {
    Rank& k = ranks[static_cast<size_t>(r)];
    fresh[static_cast<size_t>(r)] = fresh_grads(k.net, r, s);
    k.zero->before_backward();
    k.net.loss(input_of(r, s)).backward();
    k.zero->finish();
    k.zero->step(1.0, s);
    k.zero->zero_grad();
    k.zero->wait_parameters();  // the all-gathers were left in flight
  });
  return fresh;
}

// A resume: every rank's weights copied from `weights`, its shard of `moments` (full, merged:
// ZeroOptimizer::full_moments_from_shards) loaded with the step count `steps`.
inline void resume_ranks(std::vector<Rank>& ranks, const std::vector<at::Tensor>& weights,
                         const std::map<std::string, at::Tensor>& moments, int64_t steps) {
  for (auto& k : ranks) {
    {
      at::NoGradGuard no_grad;
      for (size_t i = 0; i < k.net.params.size(); ++i) k.net.params[i].copy_(weights[i]);
    }
    k.zero->load_full_moments(moments, steps);
  }
}

inline double max_param_diff(const Net& a, const Net& b) {
  double d = 0;
  for (size_t i = 0; i < a.params.size(); ++i) d = std::max(d, testing_util::max_abs_diff(a.params[i], b.params[i]));
  return d;
}

// Measured here: 0 (the sharded update is AdamW's arithmetic element for element); the margin is
// for vectorized and scalar loops that may round otherwise. The updates themselves are ~2e-2.
constexpr double kTol = 1e-7;

}  // namespace xltune::zero_test
