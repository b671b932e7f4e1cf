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
