// The EMA of the trained weights (train/ema.h, Note [EMA of the trained weights]): diffusers'
// EMAModel decay and update, checked against the formula written out here in float64; the swap
// for validation and export, which must give the trained values back bit for bit; the state a
// checkpoint holds.
#include "train/ema.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "core/error.h"

namespace xltune {
namespace {

// diffusers' EMAModel.get_decay (use_ema_warmup False, update_after_step 0, min_decay 0) at
// optimization step s, written out: step = max(0, s - 1); 0 if step <= 0, else
// min(cap, (1 + step) / (10 + step)).
double diffusers_decay(double cap, int s) {
  const int step = std::max(0, s - 1);
  if (step <= 0) return 0.0;
  return std::min(cap, (1.0 + step) / (10.0 + step));
}

TEST(ParameterEma, DecayIsDiffusersWarmupCappedByEmaDecay) {
  EXPECT_EQ(ParameterEma::decay_at(0.9999, 1), 0.0) << "the first step copies the weights";
  EXPECT_EQ(ParameterEma::decay_at(0.9999, 2), 2.0 / 11.0);
  EXPECT_EQ(ParameterEma::decay_at(0.9999, 3), 3.0 / 12.0);
  EXPECT_EQ(ParameterEma::decay_at(0.9999, 91), 91.0 / 100.0);
  EXPECT_EQ(ParameterEma::decay_at(0.5, 3), 0.25) << "below the cap: the warmup value";
  EXPECT_EQ(ParameterEma::decay_at(0.5, 100), 0.5) << "above it: the cap";
  EXPECT_EQ(ParameterEma::decay_at(0.9999, 1000000), 0.9999);
  for (int s = 1; s <= 40; ++s) EXPECT_DOUBLE_EQ(ParameterEma::decay_at(0.9, s), diffusers_decay(0.9, s)) << s;
}

// Two tensors whose values at each step are known; the average is followed in float64 beside it.
TEST(ParameterEma, UpdateIsDiffusersEmaOfTheValuesAfterEachStep) {
  at::manual_seed(3);
  at::Tensor a = at::randn({3, 4});
  at::Tensor b = at::randn({5});
  const at::Tensor a0 = a.clone(), b0 = b.clone();
  ParameterEma ema({{"unet.a", a}, {"unet.b", b}}, 0.95);
  at::Tensor ea = a0.to(at::kDouble), eb = b0.to(at::kDouble);  // the average starts at the weights
  for (int s = 1; s <= 6; ++s) {
    // The "optimizer step": the trained tensors take new values in place.
    a.copy_(a0 * (1.0 + 0.3 * s) + 0.1 * s);
    b.copy_(b0 - 0.2 * s * s);
    ema.update(s);
    const double d = diffusers_decay(0.95, s);
    ea = d * ea + (1 - d) * a.to(at::kDouble);
    eb = d * eb + (1 - d) * b.to(at::kDouble);
    // Float32 arithmetic against float64: a few ulps of values of order 10.
    EXPECT_LT((ema.shadows()[0].to(at::kDouble) - ea).abs().max().item<double>(), 1e-5) << "step " << s;
    EXPECT_LT((ema.shadows()[1].to(at::kDouble) - eb).abs().max().item<double>(), 1e-5) << "step " << s;
    if (s == 1) {
      EXPECT_TRUE(at::allclose(ema.shadows()[0], a, 0, 2e-6)) << "decay 0: the weights themselves";
    }
  }
  EXPECT_FALSE(at::allclose(ema.shadows()[0], a, 1e-3, 0)) << "an average, not the last weights";
  EXPECT_EQ(ema.state_bytes(), (12 + 5) * 4);
}

// Note [Reading a step one step late]: the update is queued with its weight times the step's
// verdict; a verdict of 0 leaves the average as it was, bit for bit, and a weight of 1 - decay is
// update(step)'s.
TEST(ParameterEma, AWeightOfZeroLeavesTheAverageAndOneMinusDecayIsTheStepsUpdate) {
  at::manual_seed(4);
  at::Tensor a = at::randn({4, 3});
  ParameterEma ema({{"unet.a", a}}, 0.9), same({{"unet.a", a}}, 0.9);
  a.add_(at::randn({4, 3}));
  ema.update(2);
  same.update(2);
  const at::Tensor before = ema.shadows()[0].clone();
  a.add_(at::randn({4, 3}));
  ema.update(at::zeros({}));
  EXPECT_TRUE(at::equal(ema.shadows()[0], before)) << "a skipped step";
  ema.update(at::full({}, 1.0 - ParameterEma::decay_at(0.9, 3)));
  same.update(3);
  EXPECT_TRUE(at::equal(ema.shadows()[0], same.shadows()[0]));
  EXPECT_FALSE(at::equal(ema.shadows()[0], before));
}

// The trained tensors may be views of a larger buffer (ZeRO-1's buckets): the swap writes through
// them and touches nothing else.
TEST(ParameterEma, SwapPutsTheAverageInAndTheTrainedValuesBackBitForBit) {
  at::manual_seed(4);
  at::Tensor bucket = at::randn({20});
  at::Tensor p = bucket.slice(0, 2, 14).view({3, 4});
  at::Tensor q = at::randn({7});
  ParameterEma ema({{"unet.p", p}, {"unet.q", q}}, 0.9);
  for (int s = 1; s <= 3; ++s) {
    p.add_(at::randn({3, 4}) * 0.7);
    q.mul_(1.3).add_(0.01);
    ema.update(s);
  }
  const at::Tensor bucket_before = bucket.clone(), q_before = q.clone();
  const at::Tensor ep = ema.shadows()[0].clone(), eq = ema.shadows()[1].clone();
  {
    const ParameterEma::Swap swap = ema.swapped_in();
    EXPECT_TRUE(at::equal(p, ep));
    EXPECT_TRUE(at::equal(q, eq));
    EXPECT_TRUE(at::equal(bucket.slice(0, 0, 2), bucket_before.slice(0, 0, 2)));
    EXPECT_TRUE(at::equal(bucket.slice(0, 14), bucket_before.slice(0, 14)));
    EXPECT_FALSE(at::equal(bucket, bucket_before));
  }
  EXPECT_TRUE(at::equal(bucket, bucket_before));
  EXPECT_TRUE(at::equal(q, q_before));
  EXPECT_TRUE(at::equal(ema.shadows()[0], ep));
  EXPECT_TRUE(at::equal(ema.shadows()[1], eq));
  {
    ParameterEma::Swap none;  // no EMA: nothing moves
  }
  EXPECT_TRUE(at::equal(q, q_before));
}

TEST(ParameterEma, StateRoundTripsUnderEmaNames) {
  at::manual_seed(5);
  at::Tensor a = at::randn({2, 3}), b = at::randn({4});
  ParameterEma ema({{"unet.a", a}, {"unet.b", b}}, 0.9);
  a.add_(1.0);
  ema.update(1);
  a.add_(1.0);
  ema.update(2);
  std::map<std::string, at::Tensor> saved;
  for (const auto& [name, t] : ema.state_tensors()) saved[name] = t.clone();
  ASSERT_EQ(saved.size(), 2u);
  ASSERT_TRUE(saved.count("ema.unet.a"));
  ASSERT_TRUE(saved.count("ema.unet.b"));
  EXPECT_EQ(ema_state_name("unet.a"), "ema.unet.a");

  at::Tensor a2 = at::zeros({2, 3}), b2 = at::zeros({4});
  ParameterEma restored({{"unet.a", a2}, {"unet.b", b2}}, 0.9);
  restored.load_state(saved);
  EXPECT_TRUE(at::equal(restored.shadows()[0], ema.shadows()[0]));
  EXPECT_TRUE(at::equal(restored.shadows()[1], ema.shadows()[1]));
  // The same update from the same state: the same bits.
  a2.copy_(a), b2.copy_(b);
  ema.update(3), restored.update(3);
  EXPECT_TRUE(at::equal(restored.shadows()[0], ema.shadows()[0]));

  std::map<std::string, at::Tensor> missing = saved;
  missing.erase("ema.unet.b");
  EXPECT_THAT([&] { restored.load_state(missing); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("no tensor 'ema.unet.b'")));
  std::map<std::string, at::Tensor> misshapen = saved;
  misshapen["ema.unet.a"] = at::zeros({3, 2});
  EXPECT_THAT([&] { restored.load_state(misshapen); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("ema.unet.a")));
}

TEST(ParameterEma, RefusesADecayOutsideTheUnitIntervalAndNonFp32Tensors) {
  EXPECT_THROW(ParameterEma({{"x", at::zeros({2})}}, 1.0), Error);
  EXPECT_THROW(ParameterEma({{"x", at::zeros({2})}}, -0.1), Error);
  EXPECT_THROW(ParameterEma({{"x", at::zeros({2}, at::kBFloat16)}}, 0.9), Error);
}

}  // namespace
}  // namespace xltune
