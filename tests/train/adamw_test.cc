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

// Note [Rounding bits from a keyed hash], written out on uint64: splitmix64's finalizer of
// key + position * golden ratio.
uint64_t reference_rounding_hash(uint64_t key, uint64_t position) {
  uint64_t z = key + position * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The int32 noise of positions first .. first + n - 1: m's (the low 16 bits) or v's (the next 16).
at::Tensor reference_noise(uint64_t key, int64_t first, int64_t n, bool v) {
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t hash = reference_rounding_hash(key, static_cast<uint64_t>(first + i));
    out.push_back(static_cast<int32_t>((hash >> (v ? 16 : 0)) & 0xFFFF));
  }
  return at::tensor(out, at::kInt);
}

at::Tensor device_key(uint64_t key) { return at::full({}, static_cast<int64_t>(key), at::kLong); }

TEST(AdamW, KeyedRoundingBitsAreTheHashOfEachPosition) {
  const int64_t first = (int64_t{1} << 40) + 12345, n = 777;  // positions past 32 bits
  for (uint64_t key : {uint64_t{0}, uint64_t{1}, draw_key(3, 7, 0, DrawKind::kRounding), ~uint64_t{0}}) {
    const at::Tensor bits = keyed_rounding_bits(device_key(key), first, n);
    std::vector<int64_t> expected;
    for (int64_t i = 0; i < n; ++i)
      expected.push_back(static_cast<int64_t>(reference_rounding_hash(key, static_cast<uint64_t>(first + i))));
    EXPECT_TRUE(at::equal(bits, at::tensor(expected, at::kLong))) << "key " << key;
    const auto [m, v] = rounding_noise_of(bits);
    EXPECT_TRUE(at::equal(m, reference_noise(key, first, n, false))) << "key " << key;
    EXPECT_TRUE(at::equal(v, reference_noise(key, first, n, true))) << "key " << key;
  }
}

TEST(AdamW, StochasticRoundingIsUnbiasedAndExactOnBf16Values) {
  // 1 + 2^-9 lies a quarter of the way between two bf16 neighbours (1 and 1 + 2^-7: spacing 2^-7).
  const float x = 1.0f + 1.0f / 512;
  const int64_t n = 200000;
  const auto [noise_m, noise_v] = rounding_noise_of(keyed_rounding_bits(device_key(99), 0, n));
  for (const at::Tensor& noise : {noise_m, noise_v}) {
    at::Tensor rounded = stochastic_round_with_noise(at::full({n}, x), noise).to(at::kFloat);
    // The mean's standard deviation: 2^-7 sqrt(1/4 * 3/4 / n) = 7.6e-6.
    EXPECT_NEAR(rounded.mean().item<double>(), x, 3e-5) << "rounds up with the probability of the dropped fraction";
    EXPECT_TRUE((rounded == 1.0f).logical_or(rounded == 1.0f + 1.0f / 128).all().item<bool>());
  }
  at::Tensor exact = at::tensor({1.0f, -2.5f, 0.0f, 3.0f});
  EXPECT_TRUE(at::equal(stochastic_round_with_noise(exact, noise_m.narrow(0, 0, 4)).to(at::kFloat), exact));
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

// Note [AdamW's bf16 moments in one pass] and [Rounding bits from a keyed hash]: the flat
// rounding pass gives each tensor's moments the rounding of its fp32 update with the noise of its
// values' positions in the state (0, 7 and 1007: the tensors in flat order), m then v, step after
// step, with group "b" frozen in some steps; the same bits whether a chunk holds a whole group or
// one tensor (the chunking changes no bit).
TEST(AdamW, Bf16MomentsRoundedInOnePassTakeTheirPositionsBits) {
  const std::vector<int64_t> position = {0, 7, 1007};
  const auto b_frozen = [](int step) { return step == 2 || step == 3; };
  for (int64_t chunk_values : {AdamW::kUpdateChunkValues, int64_t{1}}) {
    SCOPED_TRACE("chunks of up to " + std::to_string(chunk_values) + " values");
    OddSizes flat(AdamWKernel::kForeach, at::kBFloat16);
    flat.opt.set_update_chunk_values(chunk_values);
    std::vector<at::Tensor> p, m16, v16;
    for (const auto& t : OddSizes::initial()) {
      p.push_back(t.detach().clone());
      m16.push_back(at::zeros_like(t, t.options().dtype(at::kBFloat16)));
      v16.push_back(at::zeros_like(t, t.options().dtype(at::kBFloat16)));
    }
    const AdamWHyper ha{1e-2, 0.9, 0.999, 1e-8, 1e-2}, hb{3e-3, 0.9, 0.999, 1e-8, 5e-2};
    std::vector<int64_t> steps(p.size(), 0);
    for (int step = 1; step <= 5; ++step) {
      flat.run(step, step, b_frozen);
      at::Generator g = at::make_generator<at::CPUGeneratorImpl>(1000 + step);
      std::vector<at::Tensor> grads;
      for (const auto& t : p) grads.push_back(at::randn(t.sizes(), g));
      const double factor = step % 3 == 0 ? 0.5 : 1.0;
      const uint64_t key = draw_key(3, static_cast<uint64_t>(step), 0, DrawKind::kRounding);
      at::NoGradGuard no_grad;
      for (const auto& [hyper, members] :
           {std::pair{ha, std::vector<size_t>{0, 1}}, std::pair{hb, std::vector<size_t>{2}}}) {
        if (members[0] == 2 && b_frozen(step)) continue;
        std::vector<at::Tensor> ps, gs, ms, vs;
        std::vector<int64_t> counts;
        for (size_t k : members) {
          ps.push_back(p[k]), gs.push_back(grads[k]);
          ms.push_back(m16[k].to(at::kFloat)), vs.push_back(v16[k].to(at::kFloat));
          counts.push_back(++steps[k]);
        }
        adamw_foreach_update(hyper, hyper.lr * factor, ps, gs, ms, vs, counts);
        for (size_t i = 0; i < members.size(); ++i) {
          const int64_t n = ms[i].numel(), first = position[members[i]];
          m16[members[i]] = stochastic_round_with_noise(ms[i], reference_noise(key, first, n, false));
          v16[members[i]] = stochastic_round_with_noise(vs[i], reference_noise(key, first, n, true));
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
}

// A tensor without a gradient inside a chunk: the tensors after it keep their own positions'
// bits (the chunk hashes each run of consecutive tensors at its place).
TEST(AdamW, Bf16RoundingSkipsTheValuesOfATensorWithoutAGradient) {
  std::vector<at::Tensor> params;
  for (int64_t n : {5, 6, 7}) params.push_back(at::full({n}, 0.5f).requires_grad_(true));
  AdamW opt({AdamWGroup{"g", AdamWHyper{1e-2, 0.9, 0.999, 1e-8, 0}, {"a", "b", "c"}, params, false}}, at::kBFloat16,
            /*seed=*/4);
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(8);
  const at::Tensor grad_a = at::randn({5}, g), grad_c = at::randn({7}, g);
  params[0].mutable_grad() = grad_a.clone();
  params[2].mutable_grad() = grad_c.clone();  // b has none
  opt.step(1.0, /*training_step=*/6);
  const uint64_t key = draw_key(4, 6, 0, DrawKind::kRounding);
  at::NoGradGuard no_grad;
  // One step from zero moments in fp32, then rounded with the noise of the tensor's positions.
  const auto expect_moments = [&](size_t k, const at::Tensor& grad, int64_t position) {
    const int64_t n = grad.numel();
    at::Tensor p = at::full({n}, 0.5f), m = at::zeros({n}), v = at::zeros({n});
    adamw_foreach_update(AdamWHyper{1e-2, 0.9, 0.999, 1e-8, 0}, 1e-2, {p}, {grad}, {m}, {v}, {1});
    const at::Tensor noise_m = reference_noise(key, position, n, false);
    const at::Tensor noise_v = reference_noise(key, position, n, true);
    EXPECT_TRUE(at::equal(opt.state(k).exp_avg, stochastic_round_with_noise(m, noise_m))) << "m of tensor " << k;
    EXPECT_TRUE(at::equal(opt.state(k).exp_avg_sq, stochastic_round_with_noise(v, noise_v))) << "v of tensor " << k;
  };
  expect_moments(0, grad_a, 0);
  expect_moments(2, grad_c, 11);  // after a's 5 and b's 6 values
  EXPECT_FALSE(opt.state(1).exp_avg.defined());
}

}  // namespace
}  // namespace xltune
