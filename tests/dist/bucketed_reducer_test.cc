// Note [Gradient buckets], with ranks as threads (dist/thread_group.h): the reduced gradients are
// the mean of the ranks' own, whatever the bucket sizes, the ready order, a tensor without a
// gradient (Note [Tensors without a gradient]), or the nested backward of gradient checkpointing.
#include "dist/bucketed_reducer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <memory>
#include <optional>
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

// `options` null: the AfterBackwardReducer instead of the bucketed one.
void run_ranks(int world, std::optional<BucketedReducer::Options> options, bool recompute, int steps,
               int touch_rank = -1) {
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
      for (int s = 1; s <= steps; ++s) {
        reducer.before_backward();
        net.loss(input_of(r, s), recompute, r == touch_rank).backward();
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

}  // namespace
}  // namespace xltune
