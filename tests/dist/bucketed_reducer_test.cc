// Note [Gradient buckets], with ranks as threads (dist/thread_group.h): the reduced gradients are
// the mean of the ranks' own, whatever the bucket sizes, the ready order, a tensor without a
// gradient (Note [Tensors without a gradient]), or the nested backward of gradient checkpointing.
#include "dist/bucketed_reducer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "core/recompute.h"
#include "dist/thread_group.h"
#include "test_util.h"

namespace xltune {
namespace {

// A small "model": three layers and a tensor the loss does not use.
struct Net {
  std::vector<at::Tensor> params;
  Net() {
    // Own generators: the ranks' threads run at once, and the global generator is shared.
    at::Generator g = at::make_generator<at::CPUGeneratorImpl>(3);
    for (auto shape : {std::vector<int64_t>{8, 5}, {8}, {6, 8}, {3, 6}, {4}})
      params.push_back((at::randn(shape, g) * 0.3).requires_grad_(true));
  }
  // `touch_last`: params[4] joins the loss (on some ranks only: Note [Tensors without a gradient]).
  at::Tensor loss(const at::Tensor& x, bool recompute, bool touch_last = false) {
    auto body = [this](const at::Tensor& in, const at::Tensor&) {
      return at::tanh(at::linear(in, params[0], params[1]));
    };
    const at::Tensor unused = at::zeros({1});
    at::Tensor h = recompute ? recompute_in_backward(body, x, unused) : body(x, unused);
    h = at::relu(at::linear(h, params[2]));
    at::Tensor out = at::linear(h, params[3]).pow(2).mean();  // params[4] takes no part...
    return touch_last ? out + params[4].pow(2).sum() : out;  // ...unless asked
  }
};

at::Tensor input_of(int rank, int step) {
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(100 * step + rank);
  return at::randn({7, 5}, g);
}

// Expected: the mean over ranks of each rank's gradients, computed in one thread; undefined for a
// tensor that no rank's loss reached (Note [Tensors without a gradient]).
std::vector<at::Tensor> expected_mean(int world, int step, bool recompute, int touch_rank) {
  std::vector<at::Tensor> sum;
  std::vector<bool> anywhere;
  for (int r = 0; r < world; ++r) {
    Net net;
    net.loss(input_of(r, step), recompute, r == touch_rank).backward();
    for (size_t i = 0; i < net.params.size(); ++i) {
      const bool got = net.params[i].grad().defined();
      at::Tensor g = got ? net.params[i].grad() : at::zeros_like(net.params[i]);
      if (sum.size() <= i) sum.push_back(g.clone()), anywhere.push_back(got);
      else sum[i] += g, anywhere[i] = anywhere[i] || got;
    }
  }
  for (size_t i = 0; i < sum.size(); ++i) sum[i] = anywhere[i] ? sum[i] / world : at::Tensor();
  return sum;
}

// `options` null: the AfterBackwardReducer instead of the bucketed one. `replayed`: as a step
// captured in segments runs it (Note [The step as a CUDA graph], train/trainer.h): backward with
// the sync off, its footprint taken at step 2 (the capture); from step 3 on a replay, whose
// gradients land in the buckets' views with no hook run, and replayed_backward(footprint).
void run_ranks(int world, std::optional<BucketedReducer::Options> options, bool recompute, int steps,
               int touch_rank = -1, bool replayed = false) {
  auto comms = make_thread_group(world);
  std::vector<std::vector<std::vector<at::Tensor>>> grads(world);  // rank, step, tensor
  std::vector<std::vector<int64_t>> buckets(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      Net net;
      std::unique_ptr<GradientReducer> owned;
      if (options) owned = std::make_unique<BucketedReducer>(*comms[r], *options);
      else owned = std::make_unique<AfterBackwardReducer>(*comms[r]);
      GradientReducer& reducer = *owned;
      reducer.prepare(net.params);
      std::vector<bool> footprint;
      for (int s = 1; s <= steps; ++s) {
        reducer.before_backward();
        reducer.set_gradient_sync(!replayed);
        const at::Tensor loss = net.loss(input_of(r, s), recompute, r == touch_rank);
        if (replayed && s >= 3) {
          const std::vector<at::Tensor> g =
              torch::autograd::grad({loss}, net.params, {}, std::nullopt, false, /*allow_unused=*/true);
          at::NoGradGuard no_grad;
          for (size_t i = 0; i < g.size(); ++i)
            if (g[i].defined()) net.params[i].mutable_grad().add_(g[i]);  // into the bucket's view
          reducer.replayed_backward(footprint);
        } else {
          loss.backward();
          if (replayed && s == 2) footprint = reducer.backward_footprint();
        }
        reducer.set_gradient_sync(true);
        reducer.finish();
        std::vector<at::Tensor> g;
        for (auto& p : net.params) g.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
        grads[r].push_back(g);
        for (auto& p : net.params) p.mutable_grad() = at::Tensor();
      }
      if (options) buckets[r] = static_cast<BucketedReducer&>(reducer).bucket_bytes();
    });
  }
  for (auto& t : threads) t.join();
  for (int s = 1; s <= steps; ++s) {
    std::vector<at::Tensor> want = expected_mean(world, s, recompute, touch_rank);
    for (int r = 0; r < world; ++r)
      for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_EQ(grads[r][s - 1][i].defined(), want[i].defined()) << "rank " << r << " step " << s << " tensor " << i;
        if (!want[i].defined()) continue;
        const double size = want[i].abs().max().item<double>();
        const double diff = testing_util::max_abs_diff(grads[r][s - 1][i], want[i]);
        // Relative to the gradient's size (up to 0.035 here). Usually equal to the bit; once, with
        // the ranks' threads and other tests sharing 2 cores, 1.03e-6 (3e-5 of the size) on one
        // tensor: libtorch's kernels may take another path under a busy thread pool. A wrong
        // mean (a missing or doubled rank) is off by a large fraction of the size.
        EXPECT_LT(diff, 1e-4 * size + 1e-9) << "rank " << r << " step " << s << " tensor " << i;
      }
  }
  for (int r = 1; r < world; ++r) EXPECT_EQ(buckets[r], buckets[0]) << "every rank builds the same buckets";
}

TEST(BucketedReducer, GradientsAreTheMeanOverRanks) {
  run_ranks(2, BucketedReducer::Options{}, false, 2);
  run_ranks(3, BucketedReducer::Options{}, false, 2);
}

TEST(BucketedReducer, SmallBucketsAndARebuiltOrderGiveTheSameMeans) {
  // 64-byte first bucket, 160-byte later ones: the 8x5 and 6x8 matrices each get their own.
  run_ranks(2, BucketedReducer::Options{160, 64, true}, false, 3);
  run_ranks(2, BucketedReducer::Options{160, 64, false}, false, 2);
}

// Note [Tensors without a gradient]: params[4] reached on rank 1 only gets the mean (its gradient
// over 2) on both ranks; reached nowhere (every other test), it is undefined on both, as one rank
// with the whole batch leaves it, so AdamW skips it on any world size.
TEST(BucketedReducer, ATensorReachedOnOneRankGetsTheMeanAndOneReachedNowhereNone) {
  run_ranks(2, BucketedReducer::Options{}, false, 2, /*touch_rank=*/1);
  run_ranks(2, BucketedReducer::Options{160, 64, true}, false, 3, /*touch_rank=*/0);
}

// A backward replayed from a CUDA graph runs no hook: the footprint its capture left stands in
// for them, so the means, and which tensors got a gradient anywhere, are the eager step's.
TEST(BucketedReducer, AReplayedBackwardReducesAsTheCapturedOneDid) {
  EXPECT_EQ(BucketedReducer(*make_thread_group(1)[0]).backward_footprint().size(), 0u);
  run_ranks(2, BucketedReducer::Options{160, 64, true}, false, 5, /*touch_rank=*/1, /*replayed=*/true);
  run_ranks(3, BucketedReducer::Options{}, false, 4, /*touch_rank=*/-1, /*replayed=*/true);
}

TEST(AfterBackwardReducer, TheSameRuleForTensorsWithoutAGradient) {
  run_ranks(2, std::nullopt, false, 2, /*touch_rank=*/1);
  run_ranks(3, std::nullopt, false, 2);
}

TEST(BucketedReducer, NestedBackwardOfRecomputeFiresTheSameHooks) {
  run_ranks(2, BucketedReducer::Options{160, 64, true}, true, 2);
}

TEST(BucketedReducer, BucketSizesFollowTheCaps) {
  auto comms = make_thread_group(2);  // a world of one builds no buckets
  Net net;
  BucketedReducer reducer(*comms[0], BucketedReducer::Options{160, 64, true});
  reducer.prepare(net.params);
  // Reverse order: [4] 16 B | [3,6] 72 B | [6,8] 192 B | [8] 32 B + [8,5] 160 B -> split.
  EXPECT_EQ(reducer.bucket_bytes(), (std::vector<int64_t>{16, 72, 192, 32, 160}));
  BucketedReducer big(*comms[0]);
  big.prepare(net.params);
  EXPECT_EQ(big.bucket_bytes().size(), 1u) << "everything fits the 1 MB first bucket";
}

// Note [bf16 gradient reduction], ranks as threads. Each rank's own gradient is computed first
// in its thread (one intra-op thread: the same bits as the reducer's backward then sees), so the
// bf16 result can be checked against its arithmetic done here, and against the fp32 mean.
struct Bf16Run {
  std::vector<std::vector<at::Tensor>> own, reduced;  // [rank][tensor]
};

Bf16Run run_bf16(int world, bool native_bf16, BucketedReducer::Options options) {
  auto comms = make_thread_group(world, native_bf16);
  Bf16Run out;
  out.own.resize(static_cast<size_t>(world));
  out.reduced.resize(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  std::vector<std::string> errors(static_cast<size_t>(world));
  const int threads_before = at::get_num_threads();
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      at::set_num_threads(1);
      try {
        Net plain, net;
        plain.loss(input_of(r, 1), false, /*touch_last=*/true).backward();
        for (auto& p : plain.params) out.own[static_cast<size_t>(r)].push_back(p.grad().clone());
        BucketedReducer reducer(*comms[static_cast<size_t>(r)], options);
        reducer.prepare(net.params);
        reducer.before_backward();
        net.loss(input_of(r, 1), false, /*touch_last=*/true).backward();
        reducer.finish();
        for (auto& p : net.params) out.reduced[static_cast<size_t>(r)].push_back(p.grad().clone());
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  at::set_num_threads(threads_before);
  for (const auto& e : errors) EXPECT_TRUE(e.empty()) << e;
  return out;
}

using testing_util::to_bf16_and_back;

TEST(BucketedReducer, Bf16ReductionIsTheMeanRoundedToBf16) {
  constexpr double u = 1.0 / 256;  // bf16's unit roundoff: 8 significant bits, 2^-8
  BucketedReducer::Options bf16;
  bf16.reduce_dtype = at::kBFloat16;
  BucketedReducer::Options small = bf16;  // several buckets
  small.bucket_bytes = 160;
  small.first_bucket_bytes = 64;
  for (bool native : {false, true}) {
    for (int world : {2, 3}) {
      for (const auto& options : {bf16, small}) {
        const Bf16Run run = run_bf16(world, native, options);
        if (::testing::Test::HasFailure()) return;
        const std::string where = std::string(native ? "bf16 sums" : "fp32 copy") + ", world " + std::to_string(world) +
                                  ", first bucket " + std::to_string(options.first_bucket_bytes);
        double largest_difference = 0;
        for (size_t i = 0; i < run.own[0].size(); ++i) {
          at::Tensor sum = run.own[0][i].clone(), magnitude = run.own[0][i].abs();
          for (size_t r = 1; r < run.own.size(); ++r) {
            sum += run.own[r][i];
            magnitude += run.own[r][i].abs();
          }
          const at::Tensor mean = sum / world;
          for (int r = 0; r < world; ++r) {
            const at::Tensor& got = run.reduced[static_cast<size_t>(r)][i];
            EXPECT_EQ(testing_util::max_abs_diff(got, run.reduced[0][i]), 0.0) << where << ": every rank the same bits";
            EXPECT_TRUE(at::equal(got, to_bf16_and_back(got))) << where << ": the mean as bf16 gave it";
            // Each share g_r / W rounded once (u |g_r| / W), and each of the W - 1 sums (NCCL's hops)
            // or the one sum (an fp32 copy) rounded once: at most u * sum_r |g_r| in all. (A
            // re-enactment in PyTorch of these gradients reaches 0.62 of it at 2 ranks, 0.61 at 3.)
            const at::Tensor excess = (got - mean).abs() - (magnitude * (u * (1 + 4 * u)) + 1e-30);
            EXPECT_LE(excess.max().item<double>(), 0.0) << where << " tensor " << i;
          }
          largest_difference = std::max(largest_difference, testing_util::max_abs_diff(run.reduced[0][i], mean));
          if (world == 2) {
            // Two ranks: round(round(g0 / 2) + round(g1 / 2)), the same on both paths.
            const at::Tensor want =
                to_bf16_and_back(to_bf16_and_back(run.own[0][i] / 2) + to_bf16_and_back(run.own[1][i] / 2));
            EXPECT_EQ(testing_util::max_abs_diff(run.reduced[0][i], want), 0.0) << where << " tensor " << i;
          }
        }
        // Random gradients are not bf16 numbers: a reduction in fp32 would not differ at all here.
        EXPECT_GT(largest_difference, 0.0) << where << ": bf16 was not used";
      }
    }
  }
  // The control: fp32 reduction of the same gradients is the mean to fp32 rounding.
  const Bf16Run fp32 = run_bf16(2, false, BucketedReducer::Options{});
  for (size_t i = 0; i < fp32.own[0].size(); ++i) {
    const at::Tensor mean = (fp32.own[0][i] + fp32.own[1][i]) / 2;
    EXPECT_LT(testing_util::max_abs_diff(fp32.reduced[0][i], mean), 1e-7 * mean.abs().max().item<double>() + 1e-12)
        << i;
  }
}

TEST(BucketedReducer, Bf16BucketsSendHalfTheBytes) {
  auto comms = make_thread_group(2);
  BucketedReducer::Options options{160, 64, true};
  options.reduce_dtype = at::kBFloat16;
  std::vector<std::vector<int64_t>> sent(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      Net net;
      BucketedReducer reducer(*comms[static_cast<size_t>(r)], options);
      reducer.prepare(net.params);
      reducer.before_backward();
      net.loss(input_of(r, 1), false, true).backward();
      reducer.finish();
      for (const auto& t : reducer.last_timings()) sent[static_cast<size_t>(r)].push_back(t.bytes);
    });
  for (auto& t : threads) t.join();
  // The buckets of BucketSizesFollowTheCaps (16, 72, 192, 32, 160 bytes in fp32) at 2 bytes a value.
  EXPECT_EQ(sent[0], (std::vector<int64_t>{8, 36, 96, 16, 80}));
  EXPECT_EQ(sent[1], sent[0]);
}

}  // namespace
}  // namespace xltune
