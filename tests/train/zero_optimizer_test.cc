// Note [Sharded optimizer state], with ranks as threads (dist/thread_group.h): W ranks of ZeRO-1,
// each holding 1/W of the moments, step the parameters as one AdamW does on the mean gradient;
// the shards of W ranks become full moments that continue on another number of ranks, or in an
// unsharded AdamW; a tensor without a gradient and shards of another world are refused. With the
// fused kernel the sharded update follows the replicated fused AdamW, and a restore continues bit
// for bit. The communication's tests (bf16, overlapped all-gathers): zero_optimizer_comm_test.cc.
#include "train/zero_optimizer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <iostream>
#include <map>
#include <thread>

#include "core/error.h"
#include "dist/thread_group.h"
#include "test_util.h"
#include "train/adamw.h"
#include "train/zero_optimizer_fixture.h"

namespace xltune {
namespace {

using namespace zero_test;  // NOLINT(build/namespaces)

TEST(ZeroOptimizer, ShardedStepsEqualOneAdamWOnTheMeanGradient) {
  for (int world : {2, 3}) {
    for (int64_t bucket_bytes : {int64_t{100}, int64_t{25} << 20}) {
      auto comms = make_thread_group(world);
      std::vector<Rank> ranks = make_ranks(comms, at::kFloat, bucket_bytes, bucket_bytes == 100 ? 40 : 1 << 20);
      Reference ref;
      for (int s = 1; s <= 3; ++s) {
        ref.step(s, step_ranks(ranks, s));
        for (int r = 0; r < world; ++r)
          EXPECT_LT(max_param_diff(ranks[static_cast<size_t>(r)].net, ref.net), kTol)
              << "world " << world << " rank " << r << " step " << s << " buckets " << ranks[0].zero->bucket_count();
      }
      if (bucket_bytes == 100) {
        EXPECT_GE(ranks[0].zero->bucket_count(), 3);
      }
      // Each rank holds its chunks only: 2 moments x ceil(n / W) per bucket.
      const int64_t all = 2 * 4 * ranks[0].zero->parameter_count();
      EXPECT_LE(ranks[0].zero->state_bytes(), all / world + 2 * 4 * ranks[0].zero->bucket_count());
      EXPECT_GE(ranks[0].zero->state_bytes(), all / world);
    }
  }
}

// The fused kernel on the shard (the chunks of several buckets, one device step count for all)
// against the replicated AdamW with the fused kernel: the same elementwise arithmetic, but the
// CPU kernel's vector and scalar loops split the values at other places (a chunk is not a tensor).
// Measured on the CPU: 1.6e-8 of the largest value after 5 steps.
TEST(ZeroOptimizer, FusedShardedStepsFollowTheFusedAdamW) {
  auto comms = make_thread_group(2);
  std::vector<Rank> ranks = make_ranks(comms, at::kFloat, 100, 40, AdamWKernel::kFused);
  EXPECT_EQ(ranks[0].zero->kernel(), AdamWKernel::kFused);
  Reference ref(AdamWKernel::kFused);
  double worst = 0;
  for (int s = 1; s <= 5; ++s) {
    ref.step(s, step_ranks(ranks, s));
    for (int r = 0; r < 2; ++r) {
      const Net& net = ranks[static_cast<size_t>(r)].net;
      for (size_t i = 0; i < net.params.size(); ++i)
        worst = std::max(worst, testing_util::max_abs_diff(net.params[i], ref.net.params[i]) /
                                    ref.net.params[i].abs().max().item<double>());
    }
  }
  // Two fp32 ulps at the largest |p|, as AdamWFused's bound: measured 6.6e-8 on an AMD EPYC.
  EXPECT_MEASURED_BELOW("ZeRO-1 fused vs AdamW fused, 2 ranks, 5 steps (relative to max |p|)", worst,
                        2.0 / (1 << 23));
  EXPECT_EQ(ranks[0].zero->steps(), 5);
  EXPECT_EQ(ref.adamw.state(0).device_step.item<double>(), 5.0);
}

// A fused 2-rank run saved after 3 steps and restored into ranks that have stepped on their own
// (their device step count is another number) continues exactly as the run that went on.
TEST(ZeroOptimizer, FusedRestoreContinuesBitForBit) {
  auto comms = make_thread_group(2);
  std::vector<Rank> whole = make_ranks(comms, at::kFloat, 100, 40, AdamWKernel::kFused);
  for (int s = 1; s <= 3; ++s) step_ranks(whole, s);
  std::vector<std::pair<std::map<std::string, at::Tensor>, std::string>> shards;
  for (auto& k : whole) {
    std::map<std::string, at::Tensor> t;
    for (auto& [name, v] : k.zero->shard_state()) t[name] = v.clone();
    shards.emplace_back(std::move(t), k.zero->layout_json());
  }
  std::vector<at::Tensor> saved;
  for (const auto& p : whole[0].net.params) saved.push_back(p.detach().clone());
  for (int s = 4; s <= 6; ++s) step_ranks(whole, s);

  auto comms_b = make_thread_group(2);
  std::vector<Rank> resumed = make_ranks(comms_b, at::kFloat, 100, 40, AdamWKernel::kFused);
  step_ranks(resumed, 1);  // device step 1: the restore must make it 3
  int64_t steps = 0;
  const std::map<std::string, at::Tensor> moments = ZeroOptimizer::full_moments_from_shards(shards, &steps);
  ASSERT_EQ(steps, 3);
  resume_ranks(resumed, saved, moments, steps);
  for (int s = 4; s <= 6; ++s) step_ranks(resumed, s);
  for (size_t r = 0; r < 2; ++r)
    for (size_t i = 0; i < whole[r].net.params.size(); ++i)
      EXPECT_TRUE(at::equal(resumed[r].net.params[i], whole[r].net.params[i]))
          << "rank " << r << " " << whole[r].net.names[i];
}

TEST(ZeroOptimizer, GradientsAndParametersAreViewsOfTheBuckets) {
  auto comms = make_thread_group(2);
  std::vector<Rank> ranks = make_ranks(comms);
  step_ranks(ranks, 1);
  // After the all-gather every rank holds the same parameters, bit for bit.
  EXPECT_EQ(max_param_diff(ranks[0].net, ranks[1].net), 0.0);
  for (const auto& p : ranks[0].net.params) EXPECT_FALSE(p.grad().defined()) << "zero_grad() clears them";
}

// Shards of 2 ranks after 2 steps -> full moments -> 3 ranks, and -> an unsharded AdamW, for step 3.
TEST(ZeroOptimizer, ShardsResumeOnAnotherNumberOfRanksAndUnsharded) {
  auto comms2 = make_thread_group(2);
  std::vector<Rank> two = make_ranks(comms2);
  Reference ref;
  for (int s = 1; s <= 2; ++s) ref.step(s, step_ranks(two, s));
  std::vector<std::pair<std::map<std::string, at::Tensor>, std::string>> shards;
  for (int r = 1; r >= 0; --r) {  // any file order
    std::map<std::string, at::Tensor> t;
    for (auto& [name, v] : two[static_cast<size_t>(r)].zero->shard_state()) t[name] = v;
    shards.emplace_back(std::move(t), two[static_cast<size_t>(r)].zero->layout_json());
  }
  int64_t steps = 0;
  std::map<std::string, at::Tensor> moments = ZeroOptimizer::full_moments_from_shards(shards, &steps);
  EXPECT_EQ(steps, 2);
  std::map<std::string, at::Tensor> want;
  for (auto& [name, v] : ref.adamw.state_tensors()) want[name] = v;
  for (const auto& name : ref.net.names)
    for (const char* m : {".exp_avg", ".exp_avg_sq"}) {
      ASSERT_TRUE(moments.count(name + m)) << name << m;
      EXPECT_LT(testing_util::max_abs_diff(moments[name + m].view(want[name + m].sizes()), want[name + m]), 1e-8)
          << name << m;
    }

  auto comms3 = make_thread_group(3);
  std::vector<Rank> three = make_ranks(comms3);
  resume_ranks(three, two[0].net.params, moments, steps);
  // Step 3 on 3 ranks has 3 ranks' batches: the reference continues from the same moments.
  std::map<std::string, at::Tensor> state = moments;
  for (const auto& name : ref.net.names) state[name + ".adamw_step"] = at::full({}, steps, at::kLong);
  Reference ref3;
  ref3.copy_params_from(two[0].net);
  ref3.adamw.load_state_tensors(state);
  ref3.step(3, step_ranks(three, 3));
  for (int r = 0; r < 3; ++r) EXPECT_LT(max_param_diff(three[static_cast<size_t>(r)].net, ref3.net), kTol) << r;

  // And the 2-rank run, continued both sharded and in one unsharded AdamW, gives the same step.
  Reference alone;
  alone.copy_params_from(two[0].net);
  alone.adamw.load_state_tensors(state);
  const std::vector<Grads> g3 = step_ranks(two, 3);
  alone.step(3, g3);
  ref.step(3, g3);
  EXPECT_LT(max_param_diff(alone.net, ref.net), kTol);
  EXPECT_LT(max_param_diff(two[0].net, ref.net), kTol);
}

TEST(ZeroOptimizer, ATensorWithoutAGradientIsNamed) {
  auto comms = make_thread_group(2);
  std::vector<Rank> ranks = make_ranks(comms);
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      Rank& k = ranks[static_cast<size_t>(r)];
      k.net.use_last = false;
      k.zero->before_backward();
      k.net.loss(input_of(r, 1)).backward();
      try {
        k.zero->finish();
      } catch (const Error& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (const auto& e : errors) {
    EXPECT_CONTAINS(e, "l2.weight got no gradient");
    EXPECT_CONTAINS(e, "--zero off");
  }
}

TEST(ZeroOptimizer, ShardsOfTheWrongWorldAreRefused) {
  auto comms = make_thread_group(2);
  std::vector<Rank> ranks = make_ranks(comms);
  std::map<std::string, at::Tensor> t;
  for (auto& [name, v] : ranks[0].zero->shard_state()) t[name] = v;
  int64_t steps = 0;
  try {
    ZeroOptimizer::full_moments_from_shards({{t, ranks[0].zero->layout_json()}}, &steps);
    FAIL() << "one shard of a world of two";
  } catch (const Error& e) {
    EXPECT_CONTAINS(e.what(), "1 shard files for a world of 2");
  }
}

}  // namespace
}  // namespace xltune
