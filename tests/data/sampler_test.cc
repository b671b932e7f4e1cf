// The distributed sampler: every epoch visits each sample exactly once across 1, 2 and 4
// ranks, ranks get equal counts, a saved position continues the identical sequence, and the
// order is pinned so that a change of platform or library cannot silently change it.
#include "data/sampler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "core/error.h"

namespace xltune {
namespace {

using Remainder = DistributedSampler::Remainder;

TEST(Sampler, SplitMix64MatchesTheReferenceGenerator) {
  // First outputs of Vigna's splitmix64.c from state 0 and from state 1234567.
  SplitMix64 zero(0);
  EXPECT_EQ(zero.next(), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(zero.next(), 0x6E789E6AA1B965F4ULL);
  SplitMix64 other(1234567);
  EXPECT_EQ(other.next(), 0x599ED017FB08FC85ULL);
}

TEST(Sampler, PermutationIsPinned) {
  // If this changes, every resumed run would see different samples: it must not. (Values
  // computed independently by a Python transcription of Note [Distributed sampler].)
  EXPECT_EQ(epoch_permutation(10, 42, 0), (std::vector<uint64_t>{5, 3, 1, 0, 7, 4, 6, 8, 2, 9}));
  EXPECT_EQ(epoch_permutation(10, 42, 1), (std::vector<uint64_t>{4, 2, 3, 6, 5, 0, 7, 1, 9, 8}));
  EXPECT_NE(epoch_permutation(10, 43, 0), epoch_permutation(10, 42, 0));
  auto p = epoch_permutation(1000, 7, 3);
  EXPECT_EQ(std::set<uint64_t>(p.begin(), p.end()).size(), 1000u);
}

// Every rank's share of one epoch, in rank order.
std::vector<std::vector<uint64_t>> epoch_shares(uint64_t n, int world, uint64_t seed, uint64_t epoch, Remainder rem,
                                                size_t batch) {
  std::vector<std::vector<uint64_t>> out;
  for (int r = 0; r < world; ++r) {
    DistributedSampler s(n, world, r, seed, rem);
    s.restore({epoch, 0});
    std::vector<uint64_t> mine;
    while (s.position().epoch == epoch) {
      auto b = s.next_batch(batch);
      mine.insert(mine.end(), b.begin(), b.end());
    }
    out.push_back(mine);
  }
  return out;
}

TEST(Sampler, EveryEpochVisitsEachSampleExactlyOnceAcrossRanks) {
  for (int world : {1, 2, 4}) {
    for (uint64_t n : {8, 12, 64}) {
      for (uint64_t epoch : {0, 1, 5}) {
        SCOPED_TRACE(testing::Message() << "world " << world << " n " << n << " epoch " << epoch);
        auto shares = epoch_shares(n, world, 99, epoch, Remainder::kPad, 3);
        std::map<uint64_t, int> seen;
        for (const auto& s : shares) {
          EXPECT_EQ(s.size(), n / world) << "equal counts per rank";
          for (auto i : s) ++seen[i];
        }
        EXPECT_EQ(seen.size(), n);
        for (const auto& [i, count] : seen) EXPECT_EQ(count, 1) << "sample " << i;
      }
    }
  }
}

TEST(Sampler, RemainderIsPaddedOrDroppedWithEqualCounts) {
  for (int world : {2, 4}) {
    for (uint64_t n : {5, 13, 3}) {
      SCOPED_TRACE(testing::Message() << "world " << world << " n " << n);
      auto pad = epoch_shares(n, world, 1, 0, Remainder::kPad, 2);
      std::map<uint64_t, int> seen;
      for (const auto& s : pad) {
        EXPECT_EQ(s.size(), (n + world - 1) / world);
        for (auto i : s) ++seen[i];
      }
      EXPECT_EQ(seen.size(), n) << "padding: every sample at least once";
      if (n >= static_cast<uint64_t>(world)) {
        auto drop = epoch_shares(n, world, 1, 0, Remainder::kDrop, 2);
        std::set<uint64_t> once;
        for (const auto& s : drop) {
          EXPECT_EQ(s.size(), n / world);
          for (auto i : s) EXPECT_TRUE(once.insert(i).second) << "drop: at most once";
        }
      }
    }
  }
  EXPECT_THROW(DistributedSampler(3, 4, 0, 1, Remainder::kDrop), Error);
  EXPECT_THROW(DistributedSampler(0, 1, 0, 1), Error);
  EXPECT_THROW(DistributedSampler(5, 2, 2, 1), Error);
}

TEST(Sampler, WorldSizesSeeTheSameSamplesPerStep) {
  // Step s of 4 ranks with batch 2 covers what step s of 1 rank with batch 8 covers.
  const uint64_t n = 32;
  DistributedSampler one(n, 1, 0, 5);
  std::vector<DistributedSampler> four;
  for (int r = 0; r < 4; ++r) four.emplace_back(n, 4, r, 5);
  for (int step = 0; step < 10; ++step) {
    auto big = one.next_batch(8);
    std::multiset<uint64_t> a(big.begin(), big.end()), b;
    for (auto& s : four) {
      auto part = s.next_batch(2);
      b.insert(part.begin(), part.end());
    }
    EXPECT_EQ(a, b) << "step " << step;
  }
}

TEST(Sampler, SavedPositionContinuesTheIdenticalSequence) {
  for (int world : {1, 2, 4}) {
    for (int rank = 0; rank < world; ++rank) {
      DistributedSampler a(23, world, rank, 2024);
      for (int k = 0; k < 7; ++k) a.next_batch(3);  // mid-epoch, and past an epoch boundary for world 4
      SamplerPosition saved = a.position();
      std::vector<std::vector<uint64_t>> rest;
      for (int k = 0; k < 12; ++k) rest.push_back(a.next_batch(3));

      DistributedSampler b(23, world, rank, 2024);
      b.restore(saved);
      EXPECT_EQ(b.position(), saved);
      for (int k = 0; k < 12; ++k) EXPECT_EQ(b.next_batch(3), rest[k]) << "world " << world << " rank " << rank << " batch " << k;
    }
  }
}

TEST(Sampler, BatchesStopAtTheEpochEnd) {
  DistributedSampler s(10, 2, 1, 3);  // 5 per rank
  EXPECT_EQ(s.steps_per_epoch(2), 3u);
  EXPECT_EQ(s.next_batch(2).size(), 2u);
  EXPECT_EQ(s.next_batch(2).size(), 2u);
  EXPECT_EQ(s.next_batch(2).size(), 1u);
  EXPECT_EQ(s.position(), (SamplerPosition{1, 0}));
}

TEST(Sampler, RestoringAnImpossiblePositionIsAnError) {
  DistributedSampler s(10, 2, 0, 3);
  EXPECT_THAT([&] { s.restore({4, 5}); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("was the world size or the data set changed?")));
}

}  // namespace
}  // namespace xltune

namespace xltune {
namespace {

// Bucketed (Note [Aspect buckets]): per step, every rank's samples with their global positions.
std::vector<std::map<int64_t, uint64_t>> bucketed_steps(const std::vector<uint64_t>& buckets, int world, uint64_t seed,
                                                        uint64_t global_batch, int steps) {
  std::vector<DistributedSampler> ranks;
  for (int r = 0; r < world; ++r) ranks.emplace_back(buckets, world, r, seed, global_batch);
  std::vector<std::map<int64_t, uint64_t>> out(static_cast<size_t>(steps));
  const size_t b = global_batch / static_cast<uint64_t>(world);
  for (int s = 0; s < steps; ++s)
    for (int r = 0; r < world; ++r) {
      const auto batch = ranks[static_cast<size_t>(r)].next_batch(b);
      EXPECT_EQ(batch.size(), b) << "rank " << r << " step " << s;
      for (size_t j = 0; j < batch.size(); ++j) out[static_cast<size_t>(s)][static_cast<int64_t>(j) * world + r] = batch[j];
    }
  return out;
}

TEST(BucketedSampler, EveryGlobalBatchIsOneBucketAndEveryRankTheSameCount) {
  // 3 buckets of 7, 2 and 1 samples (the one-sample bucket fills a batch by itself).
  std::vector<uint64_t> buckets{5, 9, 5, 5, 7, 5, 5, 9, 5, 5};
  DistributedSampler one(buckets, 2, 0, 11, 4);
  EXPECT_EQ(one.per_rank(), (2u + 1u + 1u) * 2u);  // batches: ceil(7/4) + ceil(2/4) + ceil(1/4)
  EXPECT_EQ(one.steps_per_epoch(2), 4u);
  for (uint64_t epoch = 0; epoch < 3; ++epoch) {
    const auto order = bucketed_epoch_order(buckets, 11, epoch, 4);
    ASSERT_EQ(order.size(), 16u);
    std::map<uint64_t, int> seen;
    for (size_t k = 0; k < order.size(); k += 4) {
      for (size_t j = 0; j < 4; ++j) EXPECT_EQ(buckets[order[k + j]], buckets[order[k]]) << "batch " << k / 4;
    }
    for (auto i : order) ++seen[i];
    EXPECT_EQ(seen.size(), buckets.size());  // every sample at least once an epoch
  }
  const auto steps = bucketed_steps(buckets, 2, 11, 4, 12);
  for (const auto& step : steps) {
    ASSERT_EQ(step.size(), 4u);
    for (const auto& [p, i] : step) EXPECT_EQ(buckets[i], buckets[step.begin()->second]);
  }
}

TEST(BucketedSampler, TwoRanksSeeWhatOneRankWithTwiceTheBatchSees) {
  std::vector<uint64_t> buckets;
  for (uint64_t i = 0; i < 23; ++i) buckets.push_back(i % 3 == 0 ? 1 : i % 5 == 0 ? 2 : 3);
  for (uint64_t g : {2u, 4u, 8u}) {
    const auto one = bucketed_steps(buckets, 1, 3, g, 20);
    EXPECT_EQ(bucketed_steps(buckets, 2, 3, g, 20), one) << "G " << g;
    if (g % 4 == 0) {
      EXPECT_EQ(bucketed_steps(buckets, 4, 3, g, 20), one) << "G " << g;
    }
  }
}

TEST(BucketedSampler, EdgeCases) {
  // One image: every step is that image, G times.
  const auto single = bucketed_steps({4}, 2, 1, 6, 3);
  for (const auto& step : single) {
    ASSERT_EQ(step.size(), 6u);
    for (const auto& [p, i] : step) EXPECT_EQ(i, 0u);
  }
  // All in one bucket: an epoch is every sample once, padded to a multiple of G like the plain sampler.
  std::vector<uint64_t> same(10, 42);
  const auto order = bucketed_epoch_order(same, 5, 0, 4);
  ASSERT_EQ(order.size(), 12u);
  EXPECT_EQ(std::set<uint64_t>(order.begin(), order.end()).size(), 10u);
  // A bucket smaller than G: its batch repeats its own samples, never another bucket's.
  std::vector<uint64_t> small{1, 1, 2, 2, 2, 2, 2, 2, 2, 2};
  const auto o = bucketed_epoch_order(small, 5, 1, 8);
  ASSERT_EQ(o.size(), 16u);  // one batch for each bucket
  int bucket1_batches = 0;
  for (size_t k = 0; k < o.size(); k += 8) {
    if (small[o[k]] != 1) continue;
    ++bucket1_batches;
    for (size_t j = 0; j < 8; ++j) EXPECT_LT(o[k + j], 2u);
  }
  EXPECT_EQ(bucket1_batches, 1);
  // The batch size must cut the global batch exactly.
  DistributedSampler s(small, 2, 0, 5, 8);
  EXPECT_THROW(s.next_batch(3), Error);
  EXPECT_THROW(DistributedSampler(small, 3, 0, 5, 8), Error);
}

TEST(BucketedSampler, PositionRestoresAndEpochsDiffer) {
  std::vector<uint64_t> buckets{1, 2, 1, 2, 1, 2, 3, 3, 1};
  DistributedSampler a(buckets, 1, 0, 9, 2), b(buckets, 1, 0, 9, 2);
  for (int k = 0; k < 7; ++k) a.next_batch(2);
  b.restore(a.position());
  for (int k = 0; k < 10; ++k) EXPECT_EQ(a.next_batch(2), b.next_batch(2));
  EXPECT_NE(bucketed_epoch_order(buckets, 9, 0, 2), bucketed_epoch_order(buckets, 9, 1, 2));
  EXPECT_NE(bucketed_epoch_order(buckets, 9, 0, 2), bucketed_epoch_order(buckets, 10, 0, 2));
}

}  // namespace
}  // namespace xltune
