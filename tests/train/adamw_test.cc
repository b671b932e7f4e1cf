// AdamW against torch.optim.AdamW (tests/reference/make_train_references.py): two groups
// with their own lr and weight decay, a learning-rate factor per step, and a tensor without a
// gradient for two steps (skipped, its own step count kept, as after the pivot). The fused kernel
// against the foreach one: the same update but for the last bits, per-tensor step counts on the
// device that follow the host's, and a restore that continues bit for bit.
#include "train/adamw.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>

#include "core/keyed_random.h"
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

// Three tensors of odd sizes (7, 1000, 4097 values) in two groups, weight decay on, stepped on
// gradients drawn from a seeded generator (the same draws for any kernel and dtype), with an lr
// factor that varies; group "b" is frozen in the steps where b_frozen(step) says so.
struct OddSizes {
  std::vector<at::Tensor> params;
  AdamW opt;
  static std::vector<at::Tensor> initial() {
    at::Generator g = at::make_generator<at::CPUGeneratorImpl>(11);
    std::vector<at::Tensor> out;
    for (int64_t n : {7, 1000, 4097}) out.push_back(at::randn({n}, g).requires_grad_(true));
    return out;
  }
  OddSizes(AdamWKernel kernel, at::ScalarType state_dtype, std::vector<at::Tensor> p = initial())
      : params(p),
        opt({AdamWGroup{"a", AdamWHyper{1e-2, 0.9, 0.999, 1e-8, 1e-2}, {"p0", "p1"}, {p[0], p[1]}, false},
             AdamWGroup{"b", AdamWHyper{3e-3, 0.9, 0.999, 1e-8, 5e-2}, {"p2"}, {p[2]}, false}},
            state_dtype, 3, kernel) {}
  // skipped(step): the step runs with a verdict of 0 on the device (Note [The step's verdict on
  // the device]); skipped steps count toward nothing, as the trainer's don't.
  void run(int first, int last, const std::function<bool(int)>& b_frozen = nullptr,
           const std::function<bool(int)>& skipped = nullptr, bool verdicts = false) {
    for (int step = first; step <= last; ++step) {
      at::Generator g = at::make_generator<at::CPUGeneratorImpl>(1000 + step);
      for (auto& p : params) p.mutable_grad() = at::randn(p.sizes(), g);
      opt.set_frozen("b", b_frozen && b_frozen(step));
      const bool skip = skipped && skipped(step);
      if (verdicts || skip) {
        opt.step(step % 3 == 0 ? 0.5 : 1.0, step, at::full({}, skip ? 0.0f : 1.0f, at::kFloat));
        opt.settle(!skip);
      } else {
        opt.step(step % 3 == 0 ? 0.5 : 1.0, step);
      }
      opt.zero_grad();
    }
  }
};

// The largest difference of a tensor relative to its largest value, over the tensors.
double max_relative_diff(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, testing_util::max_abs_diff(a[i], b[i]) / b[i].abs().max().item<double>());
  return worst;
}

// The fused kernel's arithmetic is fp32 as the foreach path's, grouped otherwise (the bias
// corrections in fp32 from a float step count, one expression per value): ulps apart per step.
// The bound: two fp32 ulps at the largest |p| (2 * 2^-23), not a figure of one CPU's kernels.
// Measured after 50 steps: an Intel CPU 8.1e-9 (fp32 state, and a group frozen 20 of 50 steps)
// and 1.4e-8 (bf16); an AMD EPYC 3.9e-8 (fp32), 5.5e-8 (bf16) and 7.8e-8 (the group frozen, on
// ATen's default kernels), which the earlier bound of 5e-8 failed (issue 23's kind of defect).
constexpr double kFusedTol = 2.0 / (1 << 23);

TEST(AdamWFused, FiftyStepsMatchTheForeachKernel) {
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    OddSizes foreach_run(AdamWKernel::kForeach, dtype), fused_run(AdamWKernel::kFused, dtype);
    foreach_run.run(1, 50);
    fused_run.run(1, 50);
    const std::string what = std::string("AdamW fused vs foreach, 50 steps, ") +
                             (dtype == at::kFloat ? "fp32" : "bf16") + " state (relative to max |p|)";
    EXPECT_MEASURED_BELOW(what, max_relative_diff(fused_run.params, foreach_run.params), kFusedTol);
    for (size_t k = 0; k < fused_run.opt.tensor_count(); ++k) {
      const AdamWTensorState& s = fused_run.opt.state(k);
      EXPECT_EQ(s.step, 50);
      ASSERT_TRUE(s.device_step.defined()) << k;
      EXPECT_EQ(s.device_step.scalar_type(), at::kFloat);
      EXPECT_EQ(s.device_step.dim(), 0);
      EXPECT_EQ(s.device_step.item<double>(), 50.0) << k;
      EXPECT_EQ(s.exp_avg.scalar_type(), dtype);
      EXPECT_FALSE(foreach_run.opt.state(k).device_step.defined()) << "foreach keeps no device counts";
    }
    EXPECT_GT(testing_util::max_abs_diff(fused_run.params[2], OddSizes::initial()[2]), 1e-3) << "it trained";
  }
}

// Group b frozen in steps 1..15 and 31..35: its tensor has 30 steps when a's have 50, and its bias
// correction must follow its own count on the device too (with a's count, b's first step after
// thawing would take step 16's bias corrections for step 1's: an update about half the right size,
// far beyond the tolerance).
TEST(AdamWFused, AFrozenThenUnfrozenGroupKeepsItsOwnStepCount) {
  const auto b_frozen = [](int step) { return step <= 15 || (step > 30 && step <= 35); };
  OddSizes foreach_run(AdamWKernel::kForeach, at::kFloat), fused_run(AdamWKernel::kFused, at::kFloat);
  foreach_run.run(1, 50, b_frozen);
  fused_run.run(1, 50, b_frozen);
  EXPECT_EQ(fused_run.opt.state(0).step, 50);
  EXPECT_EQ(fused_run.opt.state(2).step, 30);
  EXPECT_EQ(fused_run.opt.state(0).device_step.item<double>(), 50.0);
  EXPECT_EQ(fused_run.opt.state(2).device_step.item<double>(), 30.0);
  EXPECT_MEASURED_BELOW("AdamW fused vs foreach, a group frozen 20 of 50 steps (relative to max |p|)",
                        max_relative_diff(fused_run.params, foreach_run.params), kFusedTol);
}

// A checkpoint of a fused run (state_tensors) loaded into an AdamW that has stepped on its own (its
// device counts are other numbers) continues exactly as the run that was not interrupted.
TEST(AdamWFused, RestoreRebuildsTheDeviceStepCountsExactly) {
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const auto b_frozen = [](int step) { return step <= 4; };
    OddSizes whole(AdamWKernel::kFused, dtype);
    whole.run(1, 10, b_frozen);
    std::map<std::string, at::Tensor> saved;
    for (auto& [name, t] : whole.opt.state_tensors()) saved[name] = t.clone();
    std::vector<at::Tensor> saved_params;
    for (const auto& p : whole.params) saved_params.push_back(p.detach().clone());
    whole.run(11, 20, b_frozen);

    OddSizes resumed(AdamWKernel::kFused, dtype);
    resumed.run(1, 3);  // device counts 3, 3, 3: the restore must replace them by 10, 10, 6
    {
      at::NoGradGuard no_grad;
      for (size_t i = 0; i < resumed.params.size(); ++i) resumed.params[i].copy_(saved_params[i]);
    }
    resumed.opt.load_state_tensors(saved);
    EXPECT_EQ(resumed.opt.state(0).device_step.item<double>(), 10.0);
    EXPECT_EQ(resumed.opt.state(2).device_step.item<double>(), 6.0);
    resumed.run(11, 20, b_frozen);
    for (size_t i = 0; i < whole.params.size(); ++i)
      EXPECT_TRUE(at::equal(resumed.params[i], whole.params[i])) << "tensor " << i << " dtype " << dtype;
  }
}

// Note [The step's verdict on the device]: a step whose verdict is 0 changes nothing (weights,
// moments, the host's and the device's step counts), for either kernel and state dtype, and a
// verdict of 1 is the plain step: a run with steps 4 and 7 skipped ends bit for bit where the
// run that never had those steps ends (their gradients drawn and discarded).
TEST(AdamW, AStepWithAVerdictOfZeroChangesNothing) {
  const auto skipped = [](int step) { return step == 4 || step == 7; };
  const auto b_frozen = [](int step) { return step <= 2; };
  for (AdamWKernel kernel : {AdamWKernel::kForeach, AdamWKernel::kFused}) {
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      SCOPED_TRACE(std::string(adamw_kernel_name(kernel)) + (dtype == at::kFloat ? " fp32" : " bf16"));
      OddSizes with_verdicts(kernel, dtype), without(kernel, dtype);
      with_verdicts.run(1, 10, b_frozen, skipped, /*verdicts=*/true);
      for (int step = 1; step <= 10; ++step)
        if (!skipped(step)) without.run(step, step, b_frozen);
      for (size_t i = 0; i < without.params.size(); ++i)
        EXPECT_TRUE(at::equal(with_verdicts.params[i], without.params[i])) << "tensor " << i;
      for (size_t k = 0; k < without.opt.tensor_count(); ++k) {
        const AdamWTensorState &a = with_verdicts.opt.state(k), &b = without.opt.state(k);
        EXPECT_EQ(a.step, b.step) << k;
        EXPECT_EQ(a.step, k < 2 ? 8 : 6) << k;
        EXPECT_TRUE(at::equal(a.exp_avg, b.exp_avg) && at::equal(a.exp_avg_sq, b.exp_avg_sq)) << k;
        if (kernel == AdamWKernel::kFused) {
          EXPECT_EQ(a.device_step.item<double>(), static_cast<double>(b.step)) << k;
        }
      }
    }
  }
}

// Note [AdamW's temporaries]: an update in chunks of a bounded number of values is the update
// of the whole group, bit for bit, for both kernels and state dtypes (a limit of 1000 values puts
// the 7- and 1000-value tensors of group a in separate chunks and the 4097-value tensor of b
// alone, larger than the limit). The fused kernel on fp32 state makes no temporaries: one call
// per group whatever the limit.
TEST(AdamW, AnUpdateInBoundedChunksIsTheWholeGroupsBitForBit) {
  for (AdamWKernel kernel : {AdamWKernel::kForeach, AdamWKernel::kFused}) {
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      SCOPED_TRACE(std::string(adamw_kernel_name(kernel)) + (dtype == at::kFloat ? " fp32" : " bf16"));
      OddSizes whole(kernel, dtype), chunked(kernel, dtype);
      chunked.opt.set_update_chunk_values(1000);
      whole.run(1, 6);
      chunked.run(1, 6);
      for (size_t i = 0; i < whole.params.size(); ++i)
        EXPECT_TRUE(at::equal(chunked.params[i], whole.params[i])) << "tensor " << i;
      for (size_t k = 0; k < whole.opt.tensor_count(); ++k) {
        EXPECT_TRUE(at::equal(chunked.opt.state(k).exp_avg, whole.opt.state(k).exp_avg)) << k;
        EXPECT_TRUE(at::equal(chunked.opt.state(k).exp_avg_sq, whole.opt.state(k).exp_avg_sq)) << k;
      }
      EXPECT_EQ(whole.opt.update_chunks(), 6 * 2) << "one call per group and step under the default limit";
      const bool temporaries = dtype == at::kBFloat16 || kernel == AdamWKernel::kForeach;
      EXPECT_EQ(chunked.opt.update_chunks(), 6 * (temporaries ? 3 : 2));
    }
  }
}

// Note [AdamW's bf16 moments in one pass]: the flat rounding pass gives the bits of rounding each
// tensor on its own with its keyed generator, m then v (the per-tensor pass it replaces, written
// out here with the public pieces), step after step, params and moments.
TEST(AdamW, Bf16MomentsRoundedInOnePassAreThePerTensorRoundingsBits) {
  OddSizes flat(AdamWKernel::kForeach, at::kBFloat16);
  std::vector<at::Tensor> p, m16, v16;
  for (const auto& t : OddSizes::initial()) {
    p.push_back(t.detach().clone());
    m16.push_back(at::zeros_like(t, t.options().dtype(at::kBFloat16)));
    v16.push_back(at::zeros_like(t, t.options().dtype(at::kBFloat16)));
  }
  const AdamWHyper ha{1e-2, 0.9, 0.999, 1e-8, 1e-2}, hb{3e-3, 0.9, 0.999, 1e-8, 5e-2};
  for (int step = 1; step <= 5; ++step) {
    flat.run(step, step);
    at::Generator g = at::make_generator<at::CPUGeneratorImpl>(1000 + step);
    std::vector<at::Tensor> grads;
    for (const auto& t : p) grads.push_back(at::randn(t.sizes(), g));
    const double factor = step % 3 == 0 ? 0.5 : 1.0;
    at::NoGradGuard no_grad;
    for (const auto& [hyper, members] : {std::pair{ha, std::vector<size_t>{0, 1}}, std::pair{hb, std::vector<size_t>{2}}}) {
      std::vector<at::Tensor> ps, gs, ms, vs;
      for (size_t k : members) {
        ps.push_back(p[k]), gs.push_back(grads[k]);
        ms.push_back(m16[k].to(at::kFloat)), vs.push_back(v16[k].to(at::kFloat));
      }
      adamw_foreach_update(hyper, hyper.lr * factor, ps, gs, ms, vs, std::vector<int64_t>(members.size(), step));
      for (size_t i = 0; i < members.size(); ++i) {
        at::Generator gen = at::globalContext().defaultGenerator(at::kCPU).clone();
        gen.set_current_seed(draw_key(3, static_cast<uint64_t>(step), members[i], DrawKind::kRounding));
        m16[members[i]] = stochastic_round_to_bf16(ms[i], gen);
        v16[members[i]] = stochastic_round_to_bf16(vs[i], gen);
      }
    }
  }
  for (size_t k = 0; k < p.size(); ++k) {
    EXPECT_TRUE(at::equal(flat.params[k].detach(), p[k])) << "tensor " << k;
    EXPECT_TRUE(at::equal(flat.opt.state(k).exp_avg, m16[k])) << "m of tensor " << k;
    EXPECT_TRUE(at::equal(flat.opt.state(k).exp_avg_sq, v16[k])) << "v of tensor " << k;
  }
  EXPECT_GT(testing_util::max_abs_diff(p[2], OddSizes::initial()[2]), 1e-3) << "it trained";
}

}  // namespace
}  // namespace xltune
