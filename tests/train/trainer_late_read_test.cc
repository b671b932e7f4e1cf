// Note [Reading a step one step late] (train/trainer.h): a step issued before the one before it
// is read trains exactly as steps read at once, and the trainer reads late only where the next
// step does not depend on the verdict it has not read.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/train_test_util.h"
#include "train/trainer.h"

namespace xltune {
namespace {

using train_testing::reducer;
using train_testing::tiny_batch;
using train_testing::tiny_config;
using train_testing::TinyModel;

StepBatch batch_of_step(int s) {
  StepBatch batch = tiny_batch(s == 7 ? 1 : 2, 0, 200 + s);  // step 7: another shape
  if (s == 5) batch.latent_mean[0][0][0][0] = std::nan("");  // skipped (Note [Skipped steps])
  if (s == 12) batch.mask.mul_(100);                           // the loss x 100: a spike
  return batch;
}

struct TrainedRun {
  std::vector<StepResult> results;
  NamedTensors state;
  int64_t issued_before_settling = 0;  // steps issued while the one before was still unread
};

// Steps 1..max_train_steps, each read at once (step()) or each collected after the next is issued.
TrainedRun train(const TinyModel& tiny, const TrainerConfig& c, bool late) {
  SdxlModel m = tiny.load();
  Trainer t(m, c, 0.13025, reducer());
  TrainedRun run;
  for (int s = 1; s <= c.max_train_steps; ++s) {
    if (!late) {
      run.results.push_back(t.step(s, batch_of_step(s)));
      continue;
    }
    const bool before_in_flight = t.step_in_flight();
    t.issue(s, {batch_of_step(s)});
    // The step before was read after this one was queued, or before it: either way it is
    // settled now and this one is in flight.
    EXPECT_TRUE(t.step_in_flight()) << "step " << s;
    if (before_in_flight) run.results.push_back(t.collect());
  }
  if (late) {
    EXPECT_THROW(t.checkpoint_tensors(), Error) << "the last step is unread";
    run.results.push_back(t.collect());
    EXPECT_FALSE(t.step_in_flight());
  }
  run.issued_before_settling = t.steps_issued_before_settling();
  run.state = t.checkpoint_tensors();
  return run;
}

void expect_same(const TrainedRun& a, const TrainedRun& b, const std::string& what) {
  ASSERT_EQ(a.state.size(), b.state.size());
  for (size_t i = 0; i < a.state.size(); ++i) {
    ASSERT_EQ(a.state[i].first, b.state[i].first);
    EXPECT_TRUE(at::equal(a.state[i].second, b.state[i].second)) << a.state[i].first << ", " << what;
  }
  ASSERT_EQ(a.results.size(), b.results.size()) << what;
  const auto same = [](double x, double y) { return x == y || (std::isnan(x) && std::isnan(y)); };
  for (size_t s = 0; s < a.results.size(); ++s) {
    EXPECT_PRED2(same, a.results[s].loss, b.results[s].loss) << "step " << s + 1 << ", " << what;
    EXPECT_PRED2(same, a.results[s].grad_norm, b.results[s].grad_norm) << "step " << s + 1 << ", " << what;
    EXPECT_EQ(a.results[s].skipped, b.results[s].skipped) << "step " << s + 1 << ", " << what;
    EXPECT_EQ(a.results[s].skipped_in_a_row, b.results[s].skipped_in_a_row) << "step " << s + 1 << ", " << what;
    EXPECT_EQ(a.results[s].learning_rates, b.results[s].learning_rates) << "step " << s + 1 << ", " << what;
    EXPECT_TRUE(at::allclose(a.results[s].x0, b.results[s].x0, 0, 0, /*equal_nan=*/true))
        << "step " << s + 1 << ", " << what;  // step 5 holds the NaN
  }
}

TEST(TrainerLateRead, StepsCollectedAfterTheNextIsIssuedTrainAsStepsReadAtOnce) {
  TinyModel tiny;
  struct Case {
    std::string name;
    LrSchedule schedule;
    double spike_factor;
    bool ema;
    TrainerConfig::StepGraph graph;
    AdamWKernel kernel;
    int64_t late;  // steps issued before the one before was settled
  };
  using G = TrainerConfig::StepGraph;
  const AdamWKernel fused = AdamWKernel::kFused;  // the device's verdict, as on a GPU
  const std::vector<Case> cases = {
      {"constant", LrSchedule{LrScheduleKind::kConstant, 0, 9}, 0, false, G::kOff, fused, 8},
      // the step graph's static inputs (what a CUDA graph replays), from the pivot on
      {"constant, static graph", LrSchedule{LrScheduleKind::kConstant, 0, 9}, 0, false, G::kStatic, fused, 8},
      // each step's inputs depend on the verdict of the step before, picked on the device
      // (StepInputs): the learning-rate factor, the spike threshold, the EMA's decay
      {"warm-up", LrSchedule{LrScheduleKind::kConstantWithWarmup, 4, 9}, 0, false, G::kOff, fused, 8},
      {"linear", LrSchedule{LrScheduleKind::kLinear, 2, 9}, 0, false, G::kOff, fused, 8},
      {"cosine, static graph", LrSchedule{LrScheduleKind::kCosine, 2, 9}, 0, false, G::kStatic, fused, 8},
      {"spike factor", LrSchedule{LrScheduleKind::kConstant, 0, 9}, 3, false, G::kOff, fused, 8},
      {"EMA", LrSchedule{LrScheduleKind::kLinear, 2, 9}, 0, true, G::kOff, fused, 8},
      {"EMA, static graph", LrSchedule{LrScheduleKind::kConstant, 0, 9}, 0, true, G::kStatic, fused, 8},
      // the foreach kernel's learning rate is a host number: a decay waits for the verdict; a
      // warm-up from its end (accepted steps 4 and on; step 5 is skipped, so from step 6)
      {"linear, foreach", LrSchedule{LrScheduleKind::kLinear, 2, 9}, 0, false, G::kOff, AdamWKernel::kForeach, 0},
      {"warm-up, foreach", LrSchedule{LrScheduleKind::kConstantWithWarmup, 4, 9}, 0, false, G::kOff,
       AdamWKernel::kForeach, 4},
  };
  for (const Case& k : cases) {
    TrainerConfig c = tiny_config();
    c.max_train_steps = 9;
    c.pivot_step = 2;
    c.schedule = k.schedule;
    c.grad_spike_factor = k.spike_factor;
    c.use_ema = k.ema;
    c.step_graph = k.graph;
    c.adamw_kernel = k.kernel;
    const TrainedRun at_once = train(tiny, c, /*late=*/false);
    const TrainedRun late = train(tiny, c, /*late=*/true);
    expect_same(at_once, late, k.name);
    EXPECT_EQ(late.issued_before_settling, k.late) << k.name;
    EXPECT_EQ(late.results[4].skipped, "non-finite gradient") << k.name;
  }
}

// The spike test judged on the device from the steps accepted before the step in flight and that
// step's norm (BadStepGuard::threshold_after): from step 12 (ten accepted: 1-4, 6-11), a spike at
// 12 skipped, and step 13 judged after it with the threshold of a skipped step before.
TEST(TrainerLateRead, TheSpikeTestOfAStepIssuedBeforeTheOneBeforeIsRead) {
  TinyModel tiny;
  for (const auto graph : {TrainerConfig::StepGraph::kOff, TrainerConfig::StepGraph::kStatic}) {
    TrainerConfig c = tiny_config();
    c.max_train_steps = 14;
    c.pivot_step = 2;
    c.schedule = LrSchedule{LrScheduleKind::kLinear, 2, 14};
    c.grad_spike_factor = 3;
    c.use_ema = true;
    c.step_graph = graph;
    c.adamw_kernel = AdamWKernel::kFused;
    const TrainedRun at_once = train(tiny, c, /*late=*/false);
    const TrainedRun late = train(tiny, c, /*late=*/true);
    expect_same(at_once, late, "spike");
    EXPECT_EQ(late.issued_before_settling, 13);
    EXPECT_EQ(late.results[4].skipped, "non-finite gradient");
    std::string norms;
    for (const auto& r : late.results) norms += " " + std::to_string(r.grad_norm);
    EXPECT_EQ(late.results[11].skipped.rfind("gradient spike", 0), 0u) << "norms:" << norms;
    for (int s : {11, 13, 14}) EXPECT_EQ(late.results[s - 1].skipped, "") << "step " << s;
  }
}

// The EMA's update is queued with the step, its weight times the step's verdict: a skipped step
// (5: a NaN) leaves the average bit for bit, and the next taken one uses the decay of the steps
// accepted (5 after step 6, not 6: Note [Skipped steps]).
TEST(TrainerLateRead, TheEmaUpdateIsGatedByTheVerdictOnTheDevice) {
  TinyModel tiny;
  SdxlModel m = tiny.load();
  TrainerConfig c = tiny_config();
  c.max_train_steps = 6;
  c.pivot_step = 2;
  c.use_ema = true;
  c.ema_decay = 0.95;
  c.adamw_kernel = AdamWKernel::kFused;
  Trainer t(m, c, 0.13025, reducer());
  const auto averages = [&] {
    std::map<std::string, at::Tensor> out;
    for (auto& [name, tensor] : t.ema()->state_tensors()) out[name] = tensor.clone();
    return out;
  };
  for (int s = 1; s <= 4; ++s) t.step(s, batch_of_step(s));
  const auto after_4 = averages();
  EXPECT_EQ(t.step(5, batch_of_step(5)).skipped, "non-finite gradient");
  const auto after_5 = averages();
  ASSERT_FALSE(after_5.empty());
  for (const auto& [name, tensor] : after_5) EXPECT_TRUE(at::equal(tensor, after_4.at(name))) << name;
  t.step(6, batch_of_step(6));
  const auto after_6 = averages();
  const float weight = static_cast<float>(1.0 - ParameterEma::decay_at(0.95, 5));
  const auto& names = t.ema()->names();
  std::map<std::string, at::Tensor> state;
  for (auto& [name, tensor] : t.checkpoint_tensors()) state[name] = tensor;
  for (size_t i = 0; i < names.size(); ++i) {
    const at::Tensor& e5 = after_5.at(ema_state_name(names[i]));
    ASSERT_TRUE(state.count(names[i])) << names[i];
    const at::Tensor w6 = state.at(names[i]).to(at::kFloat);  // the weights after step 6
    const at::Tensor expected = e5 - (e5 - w6) * at::full({}, weight);
    EXPECT_TRUE(at::equal(after_6.at(ema_state_name(names[i])), expected)) << names[i];
  }
}

TEST(TrainerLateRead, AStepIsIssuedWithAtMostOneUncollected) {
  TinyModel tiny;
  SdxlModel m = tiny.load();
  TrainerConfig c = tiny_config();
  c.max_train_steps = 3;
  Trainer t(m, c, 0.13025, reducer());
  EXPECT_THROW(t.collect(), Error) << "nothing issued";
  t.issue(1, {batch_of_step(1)});
  EXPECT_THROW(t.restore({}, 0), Error) << "step 1 in flight";
  t.issue(2, {batch_of_step(2)});
  EXPECT_THROW(t.issue(3, {batch_of_step(3)}), Error) << "steps 1 and 2 not collected";
  EXPECT_EQ(t.collect().skipped, "");
  EXPECT_TRUE(t.step_in_flight());
  t.collect();
  EXPECT_FALSE(t.step_in_flight());
  EXPECT_NO_THROW(t.checkpoint_tensors());
}

}  // namespace
}  // namespace xltune
