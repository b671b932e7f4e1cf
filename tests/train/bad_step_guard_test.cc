#include "train/bad_step_guard.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <vector>

namespace xltune {
namespace {

TEST(BadStepGuard, SkipsNonFiniteNormsAlways) {
  BadStepGuard guard;  // spikes off
  EXPECT_EQ(guard.verdict(std::nan("")), "non-finite gradient");
  EXPECT_EQ(guard.verdict(std::numeric_limits<double>::infinity()), "non-finite gradient");
  EXPECT_EQ(guard.verdict(1e30), "");
}

// The median of the last 100 accepted norms, judged once 10 were accepted.
TEST(BadStepGuard, SkipsASpikeAboveTheFactorTimesTheRecentMedian) {
  BadStepGuard guard(5.0);
  for (int i = 0; i < 9; ++i) guard.accept(1.0 + i);  // 1 .. 9
  EXPECT_EQ(guard.verdict(1000), "") << "fewer than 10 accepted steps: no judgement yet";
  guard.accept(10);  // 1 .. 10: median 5.5
  EXPECT_DOUBLE_EQ(guard.median_norm(), 5.5);
  EXPECT_EQ(guard.verdict(27.5), "");
  EXPECT_NE(guard.verdict(27.6).find("gradient spike (norm 27.6 > 5 x median 5.5)"), std::string::npos)
      << guard.verdict(27.6);
  // Only the last 100 count: 100 norms of 2 push the early ones out.
  for (int i = 0; i < 100; ++i) guard.accept(2.0);
  EXPECT_DOUBLE_EQ(guard.median_norm(), 2.0);
  EXPECT_NE(guard.verdict(10.5), "");
}

// Note [The step's verdict on the device]: the device's verdict is the host's for every norm,
// at the spike threshold's edge too (the norm compared in fp64, as the host compares it).
TEST(BadStepGuard, TheVerdictOnTheDeviceIsTheHosts) {
  BadStepGuard guard(5.0);
  const float edge = 27.5f;  // 5 x the median 5.5 of 1 .. 10, a float exactly
  const std::vector<float> norms = {0.0f,
                                    1.0f,
                                    1e30f,
                                    edge,
                                    std::nextafter(edge, 100.0f),
                                    std::nextafter(edge, 0.0f),
                                    std::numeric_limits<float>::infinity(),
                                    -std::numeric_limits<float>::infinity(),
                                    std::numeric_limits<float>::quiet_NaN()};
  for (int history : {0, 10}) {
    for (float norm : norms) {
      const at::Tensor on_device = guard.verdict_on_device(at::full({}, norm, at::kFloat));
      EXPECT_EQ(on_device.scalar_type(), at::kFloat);
      EXPECT_EQ(on_device.dim(), 0);
      EXPECT_EQ(on_device.item<float>() == 1.0f, guard.verdict(norm).empty())
          << "norm " << norm << " after " << history << " accepted steps";
      EXPECT_TRUE(on_device.item<float>() == 0.0f || on_device.item<float>() == 1.0f);
    }
    for (int i = 1; i <= 10; ++i) guard.accept(i);
  }
  EXPECT_DOUBLE_EQ(guard.spike_threshold(), 5 * 5.5);
  EXPECT_TRUE(std::isinf(BadStepGuard().spike_threshold()));
}

// Note [Reading a step one step late]: the threshold for the step after one in flight, taken on
// the device from that step's norm and verdict, is the host's after it settles, bit for bit: for
// histories of every length around the judging minimum and the window's size (both parities of
// the median), for norms below, between and above the others, ties, and a verdict of 0.
TEST(BadStepGuard, TheThresholdAfterAStepInFlightIsTheHostsAfterItSettles) {
  at::manual_seed(7);
  const at::Tensor noise = at::rand({120}, at::kDouble);
  const auto is_taken = at::full({}, 1.0f), is_skipped = at::full({}, 0.0f);
  for (int64_t history : {0, 8, 9, 10, 11, 12, 13, 57, 98, 99, 100, 101, 110}) {
    BadStepGuard guard(3.0);
    for (int64_t i = 0; i < history; ++i) guard.accept(1.0 + noise[i].item<double>());
    for (double x : {0.0, 0.5, 1.0 + noise[0].item<double>(), 1.25, 1.5, 1.75, 1.999, 2.5, 1e6}) {
      const float norm = static_cast<float>(x);  // the step's norm is a float32 on the device
      BadStepGuard settled = guard;
      settled.accept(norm);
      const at::Tensor if_taken = guard.threshold_after(at::full({}, norm), is_taken);
      EXPECT_EQ(if_taken.scalar_type(), at::kDouble);
      EXPECT_EQ(if_taken.item<double>(), settled.spike_threshold()) << history << " accepted, then " << norm;
      EXPECT_EQ(guard.threshold_after(at::full({}, norm), is_skipped).item<double>(), guard.spike_threshold())
          << history << " accepted, then " << norm << " skipped";
    }
    const at::Tensor nan = at::full({}, std::numeric_limits<float>::quiet_NaN());
    EXPECT_EQ(guard.threshold_after(nan, is_skipped).item<double>(), guard.spike_threshold()) << "a NaN step skipped";
  }
  EXPECT_TRUE(std::isinf(BadStepGuard().threshold_after(at::full({}, 1.0f), is_taken).item<double>()))
      << "no spike test";
}

TEST(BadStepGuard, CountsSkipsInARowAndResumesExactly) {
  BadStepGuard guard(3.0);
  for (int i = 0; i < 12; ++i) guard.accept(0.5 + 0.1 * i);
  guard.skip();
  guard.skip();
  EXPECT_EQ(guard.skipped_in_a_row(), 2);
  EXPECT_EQ(guard.skipped_total(), 2);
  std::map<std::string, at::Tensor> saved;
  for (auto& [name, t] : guard.state_tensors()) saved[name] = t;
  BadStepGuard resumed(3.0);
  resumed.load_state(saved, 14);
  EXPECT_EQ(resumed.accepted_steps(), 12);
  EXPECT_EQ(resumed.skipped_in_a_row(), 2);
  EXPECT_DOUBLE_EQ(resumed.median_norm(), guard.median_norm());
  EXPECT_EQ(resumed.verdict(4.0), guard.verdict(4.0));
  resumed.accept(1.0);
  EXPECT_EQ(resumed.skipped_in_a_row(), 0);
  EXPECT_EQ(resumed.skipped_total(), 2);
  // A checkpoint of another step does not add up.
  BadStepGuard wrong;
  EXPECT_THROW(wrong.load_state(saved, 20), std::exception);
  // One from before the guard: every completed step was accepted.
  BadStepGuard old;
  old.load_state({}, 7);
  EXPECT_EQ(old.accepted_steps(), 7);
}

TEST(BadStepGuard, RefusesAFactorThatWouldSkipOrdinarySteps) {
  EXPECT_THROW(BadStepGuard(0.5), std::exception);
  EXPECT_THROW(BadStepGuard(std::nan("")), std::exception);
  EXPECT_NO_THROW(BadStepGuard(0));
}

}  // namespace
}  // namespace xltune
