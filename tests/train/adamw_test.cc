// AdamW against torch.optim.AdamW (tests/reference/make_train_references.py): two groups
// with their own lr and weight decay, a learning-rate factor per step, and a tensor without a
// gradient for two steps (skipped, its own step count kept, as after the pivot).
#include "train/adamw.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "core/safetensors.h"
#include "test_util.h"
#include "test_paths.h"

namespace xltune {
namespace {

TEST(AdamWParity, SixStepsOfTwoGroupsMatchTorch) {
  SafetensorsFile dump(std::string(xltune::test_paths::testdata_dir()) + "/train_refs/adamw.safetensors");
  at::Tensor p0 = dump.tensor("p0.initial").clone().requires_grad_(true);
  at::Tensor p1 = dump.tensor("p1.initial").clone().requires_grad_(true);
  AdamW opt({AdamWGroup{"a", AdamWHyper{1e-2, 0.9, 0.999, 1e-8, 1e-2}, {"p0"}, {p0}, false},
             AdamWGroup{"b", AdamWHyper{3e-3, 0.9, 0.999, 1e-8, 0.0}, {"p1"}, {p1}, false}});
  const double factors[] = {1.0, 0.5, 0.25, 1.0, 0.75, 0.1};
  double worst = 0;
  for (int step = 1; step <= 6; ++step) {
    p0.mutable_grad() = dump.tensor("grad." + std::to_string(step) + ".0").clone();
    if (dump.find("grad." + std::to_string(step) + ".1")) p1.mutable_grad() = dump.tensor("grad." + std::to_string(step) + ".1").clone();
    opt.step(factors[step - 1], step);
    opt.zero_grad();
    worst = std::max({worst, testing_util::max_abs_diff(p0, dump.tensor("p0.after." + std::to_string(step))),
                      testing_util::max_abs_diff(p1, dump.tensor("p1.after." + std::to_string(step)))});
  }
  EXPECT_EQ(opt.state(1).step, 4) << "steps without a gradient do not count";
  // The same fp32 operations in the same order as torch's single-tensor AdamW: measured 0 on
  // ATen's native, avx2 and default CPU kernels (tests/tolerances); the bound is 1-2 ulps.
  EXPECT_MEASURED_BELOW("AdamW vs torch after 6 steps", worst, 1e-7);
  std::printf("AdamW vs torch: max |diff| %.3g after 6 steps\n", worst);
}

TEST(AdamW, FrozenGroupKeepsItsStateAndIsNotUpdated) {
  at::Tensor p = at::ones({3}).requires_grad_(true);
  AdamW opt({AdamWGroup{"g", AdamWHyper{0.1, 0.9, 0.999, 1e-8, 0.0}, {"p"}, {p}, false}});
  p.mutable_grad() = at::ones({3});
  opt.step(1.0, 1);
  const at::Tensor after_one = p.detach().clone();
  opt.set_frozen("g", true);
  p.mutable_grad() = at::ones({3});
  opt.step(1.0, 2);
  EXPECT_TRUE(at::equal(p.detach(), after_one));
  EXPECT_EQ(opt.state(0).step, 1);
  EXPECT_GT(opt.state_bytes(), 0);
}

TEST(AdamW, StochasticRoundingIsUnbiasedAndExactOnBf16Values) {
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(5);
  // 1 + 2^-10 lies a quarter of the way between two bf16 neighbours (1 and 1 + 2^-7 ... spacing 2^-7).
  const float x = 1.0f + 1.0f / 512;
  at::Tensor rounded = stochastic_round_to_bf16(at::full({200000}, x), g).to(at::kFloat);
  const double mean = rounded.mean().item<double>();
  EXPECT_NEAR(mean, x, 2e-5) << "rounds up with the probability of the dropped fraction";
  EXPECT_TRUE((rounded == 1.0f).logical_or(rounded == 1.0f + 1.0f / 128).all().item<bool>());
  at::Tensor exact = at::tensor({1.0f, -2.5f, 0.0f, 3.0f});
  EXPECT_TRUE(at::equal(stochastic_round_to_bf16(exact, g).to(at::kFloat), exact));
}

}  // namespace
}  // namespace xltune
