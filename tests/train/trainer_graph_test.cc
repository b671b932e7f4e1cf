// Note [The step as a CUDA graph] (train/trainer.h) on the CPU: the static-input step that a
// CUDA graph captures, run eagerly (TrainerConfig::StepGraph::kStatic) through the same warm-up,
// capture and replay counts, trains bit for bit as the eager step, on one rank and on two (the
// reduction between the two segments), and shapes keep their graphs. On a GPU bench/gpu/run
// compares the captured step itself with the eager one.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "dist/bucketed_reducer.h"
#include "dist/communicator.h"
#include "dist/gradient_reducer.h"
#include "dist/thread_group.h"
#include "train/step_capture.h"
#include "train/train_test_util.h"
#include "train/trainer.h"

namespace xltune {
namespace {

using train_testing::reducer;
using train_testing::tiny_batch;
using train_testing::tiny_config;
using train_testing::TinyModel;

// Two runs' tensors and step results, the same bits (a NaN the same as a NaN).
void expect_same_run(const NamedTensors& ta, const NamedTensors& tb, const std::vector<StepResult>& a,
                     const std::vector<StepResult>& b) {
  ASSERT_EQ(ta.size(), tb.size());
  for (size_t i = 0; i < ta.size(); ++i) {
    ASSERT_EQ(ta[i].first, tb[i].first);
    EXPECT_TRUE(at::equal(ta[i].second, tb[i].second)) << ta[i].first;
  }
  ASSERT_EQ(a.size(), b.size());
  const auto same = [](double x, double y) { return x == y || (std::isnan(x) && std::isnan(y)); };
  for (size_t s = 0; s < a.size(); ++s) {
    EXPECT_PRED2(same, a[s].loss, b[s].loss) << "step " << s + 1;
    EXPECT_PRED2(same, a[s].grad_norm, b[s].grad_norm) << "step " << s + 1;
    EXPECT_EQ(a[s].skipped, b[s].skipped) << "step " << s + 1;
    EXPECT_EQ(a[s].learning_rates, b[s].learning_rates) << "step " << s + 1;
    EXPECT_TRUE(at::equal(a[s].x0.nan_to_num(7), b[s].x0.nan_to_num(7))) << "step " << s + 1;
    EXPECT_TRUE(at::equal(a[s].noise, b[s].noise)) << "step " << s + 1;
    EXPECT_TRUE(at::equal(a[s].timesteps, b[s].timesteps)) << "step " << s + 1;
  }
}

// Note [The step as a CUDA graph]: the static-input step (what a CUDA graph captures; run eagerly
// here, the CPU's stand-in) trains exactly as the eager step, bit for bit: learning rates from
// the device through a warm-up schedule, a skipped step (a NaN in the batch), the spike
// threshold once there is history, a change of batch shape, the state a checkpoint holds.
NamedTensors run_graphed(const TinyModel& tiny, const TrainerConfig& c, std::vector<StepResult>& results,
                         int64_t* graphed_steps) {
  SdxlModel m = tiny.load();
  Trainer t(m, c, 0.13025, reducer());
  for (int s = 1; s <= c.max_train_steps; ++s) {
    StepBatch batch = tiny_batch(s == 9 ? 1 : 2, 0, 100 + s);  // step 9: another shape
    if (s == 6) batch.latent_mean[0][0][0][0] = std::nan("");
    results.push_back(t.step(s, batch));
  }
  *graphed_steps = t.graphed_steps();
  return t.checkpoint_tensors();
}

TEST(TrainerStepGraph, StaticStepsTrainAsTheEagerStepsBitForBit) {
  TinyModel tiny;
  for (int variant = 0; variant < 5; ++variant) {
    const bool fused_projections = variant > 0;
    TrainerConfig eager = tiny_config();
    // bf16 moments: the rounding's key staged before each step (Note [Rounding bits from a keyed hash]).
    if (variant == 4) eager.optimizer_state_dtype = at::kBFloat16;
    eager.use_ema = variant == 2;  // the EMA follows the settled step, outside what is captured
    // Full fine-tuning's bf16 autocast (of CUDA: on the CPU it changes no op) no longer keeps the
    // step out of the graph.
    eager.autocast_bf16 = variant == 3;
    eager.max_train_steps = 14;
    eager.pivot_step = 2;
    eager.schedule = LrSchedule{LrScheduleKind::kLinear, 5, 14};
    eager.grad_spike_factor = 3;
    eager.adamw_kernel = AdamWKernel::kFused;
    eager.lora_fused_projections = fused_projections;
    TrainerConfig graphed = eager;
    graphed.step_graph = TrainerConfig::StepGraph::kStatic;
    std::vector<StepResult> a, b;
    int64_t eager_graphed = -1, graphed_steps = -1;
    const NamedTensors ta = run_graphed(tiny, eager, a, &eager_graphed);
    const NamedTensors tb = run_graphed(tiny, graphed, b, &graphed_steps);
    EXPECT_EQ(eager_graphed, 0);
    EXPECT_EQ(graphed_steps, 12) << "every step after the pivot";
    SCOPED_TRACE("variant " + std::to_string(variant));
    expect_same_run(ta, tb, a, b);
    EXPECT_EQ(a[5].skipped, "non-finite gradient");
  }
}

// Batch shapes that come back (aspect buckets) keep their graphs: each shape warms up, is
// captured once and replays from then on, however the shapes alternate; beyond
// max_graphed_shapes the shape used longest ago is dropped and starts over when it returns. With
// kStatic the counts are those a GPU run would have, and every step is the eager step's bits.
struct ShapeRun {
  NamedTensors tensors;
  std::vector<double> losses;
  int64_t graphed = 0, captures = 0, replays = 0, shapes = 0;
};
ShapeRun run_shapes(const TinyModel& tiny, const TrainerConfig& c, const std::vector<int64_t>& batch_sizes) {
  SdxlModel m = tiny.load();
  Trainer t(m, c, 0.13025, reducer());
  ShapeRun out;
  for (size_t s = 1; s <= batch_sizes.size(); ++s)
    out.losses.push_back(t.step(static_cast<int64_t>(s), tiny_batch(batch_sizes[s - 1], 0, 200 + s)).loss);
  out.tensors = t.checkpoint_tensors();
  out.graphed = t.graphed_steps(), out.captures = t.graph_captures(), out.replays = t.graph_replays();
  out.shapes = t.graphed_shapes();
  return out;
}

TEST(TrainerStepGraph, ShapesThatComeBackReplayTheirOwnGraph) {
  TinyModel tiny;
  struct Case {
    std::vector<int64_t> sizes;  // the batch size of each step (the shape); steps 1-2 before the pivot
    int64_t max_shapes, captures, replays, shapes;
  };
  const std::vector<Case> cases = {
      // b=2 at steps 3 5 7 9 10 13 15, b=1 at 4 6 8 11 12 14 16: each warm, warm, capture, 4 replays.
      {{2, 2, 2, 1, 2, 1, 2, 1, 2, 2, 1, 1, 2, 1, 2, 1}, 16, 2, 8, 2},
      // Two graphs at most: b=1 (steps 3-6) warm, warm, capture, replay; b=2 (7-9) warm, warm,
      // capture; b=3 (10) drops b=1 (last used at 6) and warms; b=2 (11) replays; b=1 (12) drops
      // b=3 (10 < 11) and warms; b=3 (13) drops b=2 and warms.
      {{2, 2, 1, 1, 1, 1, 2, 2, 2, 3, 2, 1, 3}, 2, 2, 2, 2},
  };
  for (const Case& k : cases) {
    TrainerConfig eager = tiny_config();
    eager.max_train_steps = static_cast<int64_t>(k.sizes.size());
    eager.pivot_step = 2;
    eager.schedule = LrSchedule{LrScheduleKind::kLinear, 3, eager.max_train_steps};
    eager.adamw_kernel = AdamWKernel::kFused;
    TrainerConfig graphed = eager;
    graphed.step_graph = TrainerConfig::StepGraph::kStatic;
    graphed.max_graphed_shapes = k.max_shapes;
    const ShapeRun a = run_shapes(tiny, eager, k.sizes), b = run_shapes(tiny, graphed, k.sizes);
    SCOPED_TRACE("at most " + std::to_string(k.max_shapes) + " shapes");
    EXPECT_EQ(a.graphed, 0);
    EXPECT_EQ(b.graphed, eager.max_train_steps - 2) << "every step after the pivot";
    EXPECT_EQ(b.captures, k.captures);
    EXPECT_EQ(b.replays, k.replays);
    EXPECT_EQ(b.shapes, k.shapes);
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    for (size_t i = 0; i < a.tensors.size(); ++i)
      EXPECT_TRUE(at::equal(a.tensors[i].second, b.tensors[i].second)) << a.tensors[i].first;
    EXPECT_EQ(a.losses, b.losses);
  }
}

// A run of static-input steps resumed from its checkpoint tensors continues exactly: the restore
// drops the step's static buffers (its optimizer state is new tensors) and the device learning
// rates and step counts come back with it.
TEST(TrainerStepGraph, ResumedStaticStepsContinueExactly) {
  TinyModel tiny;
  TrainerConfig c = tiny_config();
  c.max_train_steps = 6;
  c.pivot_step = 1;
  c.schedule = LrSchedule{LrScheduleKind::kLinear, 2, 6};
  c.adamw_kernel = AdamWKernel::kFused;
  c.step_graph = TrainerConfig::StepGraph::kStatic;
  SdxlModel m = tiny.load();
  Trainer whole(m, c, 0.13025, reducer());
  for (int s = 1; s <= 6; ++s) whole.step(s, tiny_batch(2, 0, 100 + s));
  SdxlModel m2 = tiny.load();
  Trainer first(m2, c, 0.13025, reducer());
  for (int s = 1; s <= 3; ++s) first.step(s, tiny_batch(2, 0, 100 + s));
  std::map<std::string, at::Tensor> saved;
  for (const auto& [name, t] : first.checkpoint_tensors()) saved[name] = t.clone();
  for (int s = 4; s <= 4; ++s) first.step(s, tiny_batch(2, 0, 100 + s));  // moves on, then goes back
  first.restore(saved, 3);
  for (int s = 4; s <= 6; ++s) first.step(s, tiny_batch(2, 0, 100 + s));
  const NamedTensors a = whole.checkpoint_tensors(), b = first.checkpoint_tensors();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;
  EXPECT_EQ(first.graphed_steps(), 3 + 1 + 3 - 1) << "steps 2..4, then 4..6 again";
}

// Steps the graph cannot hold run eagerly: the foreach kernel (host bias corrections), more
// micro-batches than graphs are kept for, and every step before the pivot.
TEST(TrainerStepGraph, StepsTheGraphCannotHoldRunEagerly) {
  TinyModel tiny;
  TrainerConfig c = tiny_config();
  c.step_graph = TrainerConfig::StepGraph::kStatic;
  c.adamw_kernel = AdamWKernel::kForeach;
  c.pivot_step = 1;
  SdxlModel m = tiny.load();
  Trainer foreach_kernel(m, c, 0.13025, reducer());
  for (int s = 1; s <= 4; ++s) foreach_kernel.step(s, tiny_batch(2, 0, 100 + s));
  EXPECT_EQ(foreach_kernel.graphed_steps(), 0);

  c.adamw_kernel = AdamWKernel::kFused;
  SdxlModel m2 = tiny.load();
  Trainer fused(m2, c, 0.13025, reducer());
  fused.step(1, tiny_batch(2, 0, 101));
  EXPECT_EQ(fused.graphed_steps(), 0) << "before the pivot";
  std::vector<StepBatch> nine;
  for (int64_t k = 0; k < 9; ++k) nine.push_back(tiny_batch(1, k, 102));
  fused.step(2, nine);
  EXPECT_EQ(fused.graphed_steps(), 0) << "nine micro-batches";
  fused.step(3, std::vector<StepBatch>{tiny_batch(1, 0, 103), tiny_batch(1, 1, 103)});
  fused.step(4, tiny_batch(2, 0, 104));
  EXPECT_EQ(fused.graphed_steps(), 2) << "two micro-batches, and one";
  EXPECT_EQ(fused.graphed_shapes(), 2) << "a step of two micro-batches is a shape of its own";
  EXPECT_EQ(fused.graph_replays(), 0) << "warm-up steps, no replay yet";

  TrainerConfig cuda = tiny_config();
  cuda.step_graph = TrainerConfig::StepGraph::kCuda;
  SdxlModel m3 = tiny.load();
  EXPECT_THROW(Trainer(m3, cuda, 0.13025, reducer()), Error) << "a CUDA graph on the CPU";
  // The capture itself: a CPU device (or a build without CUDA) is one error naming the way out.
  try {
    StepCapture::make(at::Device(at::kCPU));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cpu"), std::string::npos) << e.what();
  }
}


// Two ranks (threads of one process, dist/thread_group.h) with the bucketed reducer, as a
// multi-GPU run has: the static step in two segments, the buckets' all-reduce run between them
// with the sync off in backward, trains as the eager step (whose hooks launch the buckets during
// backward) does on both ranks, bit for bit. With the pivot at 0 the first step is eager anyway:
// the buckets are rebuilt in backward's order after it.
struct RankRun {
  NamedTensors tensors;
  std::vector<double> losses;
  int64_t graphed = 0, captures = 0, replays = 0;
  std::vector<std::string> groups;  // the optimizer groups
};

// Each rank's step in `micro` micro-batches of 2 (positions interleaved over the ranks); with
// `zero`, full fine-tuning's AdamW state sharded over the ranks (its comm set per rank).
std::vector<RankRun> run_two_ranks(const TinyModel& tiny, const TrainerConfig& c, int64_t steps, int64_t micro = 1,
                                   const OptimizerShards* zero = nullptr) {
  constexpr int kWorld = 2;
  const std::vector<std::shared_ptr<Communicator>> comms = make_thread_group(kWorld);
  // The batches first, here: tiny_batch seeds the global generator, which the threads must not share.
  std::vector<std::vector<std::vector<StepBatch>>> batches(kWorld);
  std::vector<SdxlModel> models;
  for (int r = 0; r < kWorld; ++r) {
    for (int64_t s = 1; s <= steps; ++s) {
      batches[r].emplace_back();
      for (int64_t k = 0; k < micro; ++k)
        batches[r].back().push_back(tiny_batch(2, 2 * (kWorld * k + r), static_cast<uint64_t>(300 + 10 * s + r + 5 * k)));
    }
    models.push_back(tiny.load());
  }
  std::vector<RankRun> out(kWorld);
  std::vector<std::exception_ptr> errors(kWorld);
  std::vector<std::thread> threads;
  for (int r = 0; r < kWorld; ++r) {
    threads.emplace_back([&, r] {
      try {
        BucketedReducer::Options buckets;
        buckets.first_bucket_bytes = 1024, buckets.bucket_bytes = 16384;  // several buckets of the tiny LoRA
        OptimizerShards shards;
        if (zero != nullptr) shards = *zero, shards.comm = comms[r].get();
        Trainer t(models[r], c, 0.13025, std::make_shared<BucketedReducer>(*comms[r], buckets), shards);
        EXPECT_EQ(t.optimizer_state_sharded(), zero != nullptr);
        for (int64_t s = 1; s <= steps; ++s) out[r].losses.push_back(t.step(s, batches[r][s - 1]).loss);
        for (const auto& [name, v] : t.checkpoint_tensors()) out[r].tensors.emplace_back(name, v.clone());
        if (auto own = t.rank_optimizer_state())  // the rank's shard of the moments
          for (const auto& [name, v] : own->tensors) out[r].tensors.emplace_back("rank." + name, v.clone());
        out[r].graphed = t.graphed_steps(), out[r].captures = t.graph_captures(), out[r].replays = t.graph_replays();
        for (const auto& group : t.groups()) out[r].groups.push_back(group.name);
      } catch (...) {
        errors[r] = std::current_exception();
        try {
          comms[r]->abort(1);  // the other rank's collectives throw instead of waiting for this one
        } catch (...) {
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  return out;
}

TEST(TrainerStepGraph, TwoRanksReduceBetweenTheSegmentsAsTheEagerStepDoes) {
  TinyModel tiny;
  for (int64_t pivot : {1, 0}) {
    SCOPED_TRACE("pivot at " + std::to_string(pivot));
    TrainerConfig eager = tiny_config();
    eager.max_train_steps = 8;
    eager.pivot_step = pivot;
    eager.schedule = LrSchedule{LrScheduleKind::kLinear, 2, 8};
    eager.adamw_kernel = AdamWKernel::kFused;
    TrainerConfig graphed = eager;
    graphed.step_graph = TrainerConfig::StepGraph::kStatic;
    const std::vector<RankRun> a = run_two_ranks(tiny, eager, 8), b = run_two_ranks(tiny, graphed, 8);
    for (size_t r = 0; r < 2; ++r) {
      SCOPED_TRACE("rank " + std::to_string(r));
      EXPECT_EQ(a[r].graphed, 0);
      EXPECT_EQ(b[r].graphed, 7) << "steps 2-8: the first is eager (the pivot, or the buckets' rebuild)";
      EXPECT_EQ(b[r].captures, 1) << "warm-ups at 2 and 3, the capture at 4";
      EXPECT_EQ(b[r].replays, 4);
      EXPECT_EQ(a[r].losses, b[r].losses);
      ASSERT_EQ(a[r].tensors.size(), b[r].tensors.size());
      for (size_t i = 0; i < a[r].tensors.size(); ++i) {
        EXPECT_TRUE(at::equal(a[r].tensors[i].second, b[r].tensors[i].second)) << a[r].tensors[i].first;
        EXPECT_TRUE(at::equal(b[0].tensors[i].second, b[r].tensors[i].second))
            << "the ranks differ: " << a[r].tensors[i].first;
      }
    }
  }
}

// Note [Gradient accumulation] under the graph: each micro-batch's forward and backward is a
// segment (a graph) of its own and the update one more, the gradients accumulated in place and
// the loss weighted by each micro-batch's share. Micro-batches of one size and of two (2 + 1:
// shares 2/3 and 1/3), a step skipped for a NaN in a later micro-batch, learning rates through a
// warm-up: the static steps train as the eager ones, bit for bit.
struct MicroRun {
  NamedTensors tensors;
  std::vector<StepResult> results;
  int64_t graphed = 0, captures = 0, replays = 0;
};

std::vector<StepBatch> micro_batches(bool unequal, int64_t s) {
  const uint64_t seed = static_cast<uint64_t>(400 + 10 * s);
  std::vector<StepBatch> out;
  if (unequal) {
    out = {tiny_batch(2, 0, seed), tiny_batch(1, 2, seed + 1)};
  } else {
    out = {tiny_batch(1, 0, seed), tiny_batch(1, 1, seed + 1), tiny_batch(1, 2, seed + 2)};
  }
  if (s == 6) out.back().latent_mean[0][0][0][0] = std::nan("");  // the step is skipped
  return out;
}

MicroRun run_micro_batches(const TinyModel& tiny, const TrainerConfig& c, bool unequal) {
  SdxlModel m = tiny.load();
  Trainer t(m, c, 0.13025, reducer());
  MicroRun out;
  for (int64_t s = 1; s <= c.max_train_steps; ++s) out.results.push_back(t.step(s, micro_batches(unequal, s)));
  out.tensors = t.checkpoint_tensors();
  out.graphed = t.graphed_steps(), out.captures = t.graph_captures(), out.replays = t.graph_replays();
  return out;
}

TEST(TrainerStepGraph, MicroBatchesTrainAsTheEagerStepBitForBit) {
  TinyModel tiny;
  for (bool unequal : {false, true}) {
    SCOPED_TRACE(unequal ? "micro-batches of 2 and 1" : "three micro-batches of 1");
    TrainerConfig eager = tiny_config();
    eager.max_train_steps = 9;
    eager.pivot_step = 1;
    eager.schedule = LrSchedule{LrScheduleKind::kLinear, 4, 9};
    eager.grad_spike_factor = 3;
    eager.adamw_kernel = AdamWKernel::kFused;
    TrainerConfig graphed = eager;
    graphed.step_graph = TrainerConfig::StepGraph::kStatic;
    const MicroRun a = run_micro_batches(tiny, eager, unequal), b = run_micro_batches(tiny, graphed, unequal);
    EXPECT_EQ(a.graphed, 0);
    EXPECT_EQ(b.graphed, 8) << "steps 2-9";
    EXPECT_EQ(b.captures, 1) << "warm-ups at 2 and 3, the capture at 4";
    EXPECT_EQ(b.replays, 5);
    expect_same_run(a.tensors, b.tensors, a.results, b.results);
    EXPECT_EQ(a.results[5].skipped, "non-finite gradient");
    EXPECT_EQ(b.results[4].x0.size(0), 3) << "every micro-batch's x0";
  }
}

// Two ranks, each step in two micro-batches: the micro-batches' graphs run with the sync off,
// accumulating into the buckets, and the reduction runs once between the last of them and the
// update, as the eager step's last backward launches it: the same bits on both ranks.
TEST(TrainerStepGraph, TwoRanksReduceWhatTheMicroBatchesAccumulated) {
  TinyModel tiny;
  TrainerConfig eager = tiny_config();
  eager.max_train_steps = 7;
  eager.pivot_step = 1;
  eager.schedule = LrSchedule{LrScheduleKind::kLinear, 2, 7};
  eager.adamw_kernel = AdamWKernel::kFused;
  TrainerConfig graphed = eager;
  graphed.step_graph = TrainerConfig::StepGraph::kStatic;
  const std::vector<RankRun> a = run_two_ranks(tiny, eager, 7, 2), b = run_two_ranks(tiny, graphed, 7, 2);
  for (size_t r = 0; r < 2; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    EXPECT_EQ(b[r].graphed, 6) << "steps 2-7";
    EXPECT_EQ(b[r].captures, 1);
    EXPECT_EQ(b[r].replays, 3);
    EXPECT_EQ(a[r].losses, b[r].losses);
    ASSERT_EQ(a[r].tensors.size(), b[r].tensors.size());
    for (size_t i = 0; i < a[r].tensors.size(); ++i) {
      EXPECT_TRUE(at::equal(a[r].tensors[i].second, b[r].tensors[i].second)) << a[r].tensors[i].first;
      EXPECT_TRUE(at::equal(b[0].tensors[i].second, b[r].tensors[i].second))
          << "the ranks differ: " << a[r].tensors[i].first;
    }
  }
}

// ZeRO-1 (Note [Sharded optimizer state]) under the graph: the micro-batches' graphs accumulate
// into the sharded buckets with the sync off; the reduce-scatters run eagerly after them, the
// local norms are a graph of their own, the norm's all-reduce runs eagerly, then clipping and the
// shards' update are one more graph and their all-gathers start eagerly after it (waited for
// before the next step's first graph). One micro-batch and two (with the UNet's stem replicated:
// two optimizers' norms in one clipping), fp32 and bf16 collectives, fp32 and bf16 moments: both
// ranks' weights, moment shards and losses the eager step's bits.
TEST(TrainerStepGraph, ShardedStateExchangesBetweenTheSegmentsAsTheEagerStepDoes) {
  TinyModel tiny;
  struct Case {
    int64_t micro;
    at::ScalarType collectives;
    double replicated;  // Note [Replicated stem under ZeRO-1]: a replicated AdamW beside the shards
    at::ScalarType state;
  };
  for (const Case& k : {Case{1, at::kFloat, 0, at::kFloat}, Case{2, at::kFloat, 0.3, at::kFloat},
                        Case{1, at::kBFloat16, 0, at::kFloat}, Case{2, at::kFloat, 0.3, at::kBFloat16}}) {
    SCOPED_TRACE(std::to_string(k.micro) + " micro-batches, collectives in " +
                 std::string(c10::toString(k.collectives)) + ", replicated " + std::to_string(k.replicated) +
                 ", moments in " + std::string(c10::toString(k.state)));
    TrainerConfig eager = tiny_config(/*lora=*/false);
    eager.max_train_steps = 7;
    eager.pivot_step = 1;
    eager.schedule = LrSchedule{LrScheduleKind::kLinear, 2, 7};
    eager.max_grad_norm = 0.05;  // the clipping's coefficient below 1: the exchanged norm is used
    eager.adamw_kernel = AdamWKernel::kFused;
    eager.optimizer_state_dtype = k.state;
    TrainerConfig graphed = eager;
    graphed.step_graph = TrainerConfig::StepGraph::kStatic;
    OptimizerShards zero;
    zero.reduce_dtype = zero.gather_dtype = k.collectives;
    zero.replicated_fraction = k.replicated;
    const std::vector<RankRun> a = run_two_ranks(tiny, eager, 7, k.micro, &zero),
                               b = run_two_ranks(tiny, graphed, 7, k.micro, &zero);
    for (size_t r = 0; r < 2; ++r) {
      SCOPED_TRACE("rank " + std::to_string(r));
      EXPECT_EQ(a[r].graphed, 0);
      EXPECT_EQ(b[r].graphed, 6) << "steps 2-7 (the first: before the pivot, and ZeRO-1's first step)";
      EXPECT_EQ(std::count(b[r].groups.begin(), b[r].groups.end(), "unet_replicated"), k.replicated > 0 ? 1 : 0);
      EXPECT_EQ(b[r].captures, 1);
      EXPECT_EQ(b[r].replays, 3);
      EXPECT_EQ(a[r].losses, b[r].losses);
      ASSERT_EQ(a[r].tensors.size(), b[r].tensors.size());
      for (size_t i = 0; i < a[r].tensors.size(); ++i) {
        ASSERT_EQ(a[r].tensors[i].first, b[r].tensors[i].first);
        EXPECT_TRUE(at::equal(a[r].tensors[i].second, b[r].tensors[i].second)) << a[r].tensors[i].first;
      }
    }
    // The weights are the same on both ranks (the all-gathers landed), the shards are each rank's own.
    for (size_t i = 0; i < b[0].tensors.size(); ++i) {
      if (b[0].tensors[i].first.rfind("unet.", 0) == 0) {
        EXPECT_TRUE(at::equal(b[0].tensors[i].second, b[1].tensors[i].second)) << b[0].tensors[i].first;
      }
    }
  }
}

}  // namespace
}  // namespace xltune
