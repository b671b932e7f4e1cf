// Note [Validation loss]: which images (held out or not, from the seed), the training set without
// the held-out ones, the same value on any number of ranks, and the EMA's weights when on.
#include "job/validation_loss.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <thread>

#include "data/sampler.h"
#include "dist/communicator.h"
#include "dist/gradient_reducer.h"
#include "dist/thread_group.h"
#include "train/train_test_util.h"

namespace xltune {
namespace {

using train_testing::reducer;
using train_testing::tiny_batch;
using train_testing::tiny_config;
using train_testing::TinyModel;

TEST(ValidationLossImages, HeldOutWhenTheSetHasFiveTimesAsManyElseTrainingImages) {
  struct Case {
    int64_t n, wanted;
    size_t rows;
    bool held_out;
  };
  for (const Case& c : {Case{6, 1, 1, true}, Case{6, 2, 2, false}, Case{20, 4, 4, true}, Case{19, 4, 4, false},
                        Case{3, 4, 3, false}, Case{6, 0, 0, false}}) {
    const ValidationLossImages v = choose_validation_loss_images(c.n, c.wanted, 11);
    EXPECT_EQ(v.rows.size(), c.rows) << c.n << " images, " << c.wanted << " wanted";
    EXPECT_EQ(v.held_out, c.held_out) << c.n << " images, " << c.wanted << " wanted";
    EXPECT_TRUE(std::is_sorted(v.rows.begin(), v.rows.end()));
    EXPECT_EQ(std::set<int64_t>(v.rows.begin(), v.rows.end()).size(), v.rows.size()) << "distinct";
    for (int64_t r : v.rows) EXPECT_TRUE(r >= 0 && r < c.n) << r;
  }
  // From the seed: the first M of the permutation under the key no epoch of the sampler uses.
  const std::vector<uint64_t> order = epoch_permutation(100, 7, kValidationLossEpoch);
  std::vector<int64_t> want(order.begin(), order.begin() + 4);
  std::sort(want.begin(), want.end());
  EXPECT_EQ(choose_validation_loss_images(100, 4, 7).rows, want);
  EXPECT_EQ(choose_validation_loss_images(100, 4, 7).rows, choose_validation_loss_images(100, 4, 7).rows);
  std::set<std::vector<int64_t>> by_seed;
  for (uint64_t seed = 1; seed <= 5; ++seed) by_seed.insert(choose_validation_loss_images(100, 4, seed).rows);
  EXPECT_GT(by_seed.size(), 1u) << "another seed, other images";
}

// `n` samples of tiny_batch's shape as a training set, sample i at shard index 100 + i.
TrainingSet tiny_set(int64_t n) {
  const StepBatch b = tiny_batch(n, 0, 41);
  TrainingSet set;
  set.mean = b.latent_mean;
  set.logvar = b.latent_logvar;
  at::manual_seed(42);
  set.mask = (at::rand({n, 1, 16, 16}) > 0.2).to(at::kFloat);
  set.input_ids_1 = b.input_ids_1;
  set.input_ids_2 = b.input_ids_2;
  set.add_time_ids = b.add_time_ids;
  for (int64_t i = 0; i < n; ++i) {
    set.caption_keys.push_back(0);
    set.captions.push_back("a photo of <s0><s1>");
    set.sources.push_back("photo-" + std::to_string(i) + ".png");
    set.shard_samples.push_back(100 + i);
  }
  set.empty_ids_1 = b.input_ids_1[0];
  set.empty_ids_2 = b.input_ids_2[0];
  set.empty_caption_key = n;
  return set;
}

TrainOptions every(int64_t steps, int64_t images) {
  TrainOptions o;
  o.validation_loss_steps = steps;
  o.validation_loss_images = images;
  return o;
}

TEST(ValidationLoss, HeldOutImagesLeaveTheTrainingSet) {
  const at::Device cpu(at::kCPU);
  TrainingSet set = tiny_set(10);
  const ValidationLoss held(every(2, 2), set, 11, cpu, false);
  EXPECT_EQ(held.held_out(), 2);
  ASSERT_EQ(set.size(), 8);
  const std::vector<int64_t> chosen = choose_validation_loss_images(10, 2, 11).rows;
  std::vector<int64_t> rest;
  for (int64_t r = 0; r < 10; ++r)
    if (std::find(chosen.begin(), chosen.end(), r) == chosen.end()) rest.push_back(100 + r);
  EXPECT_EQ(set.shard_samples, rest) << "the training set keeps the others, in order, by their shard samples";
  const TrainingSet whole = tiny_set(10);
  EXPECT_TRUE(at::equal(set.mean[0], whole.mean[rest[0] - 100]));
  EXPECT_TRUE(held.due(2, 5) && held.due(4, 5) && held.due(5, 5));
  EXPECT_FALSE(held.due(3, 5));

  TrainingSet small = tiny_set(10);
  const ValidationLoss on_training(every(2, 3), small, 11, cpu, false);
  EXPECT_EQ(on_training.held_out(), 0) << "10 images are too few to hold out 3";
  EXPECT_EQ(small.size(), 10);
  TrainingSet untouched = tiny_set(10);
  const ValidationLoss off(TrainOptions{}, untouched, 11, cpu, false);
  EXPECT_FALSE(off.on());
  EXPECT_FALSE(off.due(5, 5));
  EXPECT_EQ(untouched.size(), 10);
}

// The same weights give the same value, bit for bit, on 1, 2 and 3 ranks: each term is a batch of one
// wherever it runs, and the all-reduce only moves the terms (x + 0 = x).
TEST(ValidationLoss, TheSameValueOnAnyNumberOfRanks) {
  TinyModel tiny;
  const TrainingSet base = tiny_set(3);  // drawn here: the threads must not share the global generator
  std::vector<double> by_world;
  for (int world : {1, 2, 3}) {
    const std::vector<std::shared_ptr<Communicator>> ranks = make_thread_group(world);
    std::vector<double> values(static_cast<size_t>(world), -1);
    std::vector<std::thread> threads;
    for (int r = 0; r < world; ++r) {
      threads.emplace_back([&, r] {
        SdxlModel m = tiny.load();
        Trainer t(m, tiny_config(), 0.13025, std::make_shared<AfterBackwardReducer>(*ranks[r]));
        TrainingSet set = base;
        const ValidationLoss loss(every(1, 3), set, 11, at::Device(at::kCPU), false);
        values[static_cast<size_t>(r)] = loss.evaluate(t, *ranks[r]);
      });
    }
    for (auto& th : threads) th.join();
    for (int r = 1; r < world; ++r) EXPECT_EQ(values[static_cast<size_t>(r)], values[0]) << world << " ranks, rank " << r;
    by_world.push_back(values[0]);
  }
  EXPECT_GT(by_world[0], 0);
  EXPECT_EQ(by_world[1], by_world[0]) << "2 ranks against 1";
  EXPECT_EQ(by_world[2], by_world[0]) << "3 ranks against 1";

  // The mean of the terms, each image at each fixed timestep.
  SdxlModel m = tiny.load();
  Trainer t(m, tiny_config(), 0.13025, reducer());
  const std::vector<int64_t> rows = choose_validation_loss_images(3, 3, 11).rows;
  const StepBatch images = base.batch({0, 1, 2}, {0, 1, 2});
  double sum = 0;
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t k = 0; k < Trainer::kValidationTimesteps; ++k) sum += t.validation_loss_term(images, i, k);
  EXPECT_EQ(rows, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_LT(std::abs(sum / (3 * Trainer::kValidationTimesteps) - by_world[0]) / by_world[0], 1e-12);
}

// With --use_ema the value is the EMA's weights' (what the validation images use), and the live
// weights are back afterwards.
TEST(ValidationLoss, UsesTheEmaWhenOn) {
  TinyModel tiny;
  SdxlModel m = tiny.load();
  TrainerConfig c = tiny_config();
  c.use_ema = true;
  c.ema_decay = 0.9;
  Trainer t(m, c, 0.13025, reducer());
  for (int s = 1; s <= 3; ++s) t.step(s, tiny_batch(2, 0, 50 + s));
  TrainingSet set = tiny_set(2);
  const ValidationLoss loss(every(1, 2), set, 11, at::Device(at::kCPU), false);
  SingleProcessCommunicator single;
  const double measured = loss.evaluate(t, single);
  const StepBatch images = set.batch({0, 1}, {0, 1});
  const auto mean_of_terms = [&] {
    double sum = 0;
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t k = 0; k < Trainer::kValidationTimesteps; ++k) sum += t.validation_loss_term(images, i, k);
    return sum / (2 * Trainer::kValidationTimesteps);
  };
  const double live = mean_of_terms();
  double ema = 0;
  {
    const ParameterEma::Swap swap = t.ema_weights_in();
    ema = mean_of_terms();
  }
  EXPECT_NE(live, ema);
  EXPECT_LT(std::abs(measured - ema) / ema, 1e-12) << "the EMA's weights";
  EXPECT_EQ(mean_of_terms(), live) << "the live weights are back";
}

}  // namespace
}  // namespace xltune
