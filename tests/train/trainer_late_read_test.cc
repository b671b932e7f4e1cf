// Note [Reading a step one step late] (train/trainer.h): a step issued before the one before it
// is read trains exactly as steps read at once, and the trainer reads late only where the next
// step does not depend on the verdict it has not read.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
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
    int64_t late;  // steps issued before the one before was settled
  };
  const std::vector<Case> cases = {
      // constant: the next step's learning rate never depends on the last verdict
      {"constant", LrSchedule{LrScheduleKind::kConstant, 0, 9}, 0, false, TrainerConfig::StepGraph::kOff, 8},
      // the step graph's static inputs (what a CUDA graph replays), from the pivot on
      {"constant, static graph", LrSchedule{LrScheduleKind::kConstant, 0, 9}, 0, false,
       TrainerConfig::StepGraph::kStatic, 8},
      // a warm-up: late once the factor is 1 whether or not the last step was taken (accepted
      // steps 4 and on; step 5 is skipped, so from step 6)
      {"warm-up", LrSchedule{LrScheduleKind::kConstantWithWarmup, 4, 9}, 0, false, TrainerConfig::StepGraph::kOff, 4},
      // each needs the last verdict: the decay's factor, the spike threshold, the EMA
      {"linear", LrSchedule{LrScheduleKind::kLinear, 2, 9}, 0, false, TrainerConfig::StepGraph::kOff, 0},
      {"spike factor", LrSchedule{LrScheduleKind::kConstant, 0, 9}, 3, false, TrainerConfig::StepGraph::kOff, 0},
      {"EMA", LrSchedule{LrScheduleKind::kConstant, 0, 9}, 0, true, TrainerConfig::StepGraph::kOff, 0},
  };
  for (const Case& k : cases) {
    TrainerConfig c = tiny_config();
    c.max_train_steps = 9;
    c.pivot_step = 2;
    c.schedule = k.schedule;
    c.grad_spike_factor = k.spike_factor;
    c.use_ema = k.ema;
    c.step_graph = k.graph;
    c.adamw_kernel = AdamWKernel::kFused;  // the device's verdict, as on a GPU
    const TrainedRun at_once = train(tiny, c, /*late=*/false);
    const TrainedRun late = train(tiny, c, /*late=*/true);
    expect_same(at_once, late, k.name);
    EXPECT_EQ(late.issued_before_settling, k.late) << k.name;
    EXPECT_EQ(late.results[4].skipped, "non-finite gradient") << k.name;
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
