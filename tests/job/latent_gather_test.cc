// The latent gather of `xltune train`: slices by rank, back into shard order, and refused when a
// slice is missing or was encoded with another scaling factor.
#include "job/latent_gather.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "test_util.h"

namespace xltune {
namespace {

using testing_util::ScopedTempDir;

LatentCacheKey base_key() { return LatentCacheKey{"vae-id", "shards-id", 64, {}}; }

// A slice whose rows hold their sample index (mean) and minus it (logvar), 2 values a row.
LatentCache slice_of(const LatentSlices& slices, int rank, double scaling_factor = 0.13025) {
  LatentCache c;
  c.key = slices.key(rank);
  c.scaling_factor = scaling_factor;
  c.channels = 2;
  for (uint64_t s : c.key.samples) {
    c.heights.push_back(1), c.widths.push_back(1);
    c.mean.insert(c.mean.end(), {static_cast<float>(s), static_cast<float>(s) + 0.5f});
    c.logvar.insert(c.logvar.end(), {-static_cast<float>(s), -static_cast<float>(s) - 0.5f});
  }
  return c;
}

TEST(LatentGather, SlicesAreStridedByRankAndNamedByRank) {
  LatentSlices slices("/out", base_key(), 7, 3);
  EXPECT_EQ(slices.key(0).samples, (std::vector<uint64_t>{0, 3, 6}));
  EXPECT_EQ(slices.key(1).samples, (std::vector<uint64_t>{1, 4}));
  EXPECT_EQ(slices.key(2).samples, (std::vector<uint64_t>{2, 5}));
  EXPECT_EQ(slices.key(2).vae_fingerprint, "vae-id");
  EXPECT_EQ(slices.path(2), "/out/latents/latents-r00002.h5");
  LatentSlices more_ranks("/out", base_key(), 2, 4);
  EXPECT_FALSE(more_ranks.empty(1));
  EXPECT_TRUE(more_ranks.empty(3));
}

TEST(LatentGather, EveryRanksSliceComesBackInShardOrder) {
  ScopedTempDir dir;
  LatentSlices slices(dir.path(), base_key(), 7, 3);
  std::filesystem::create_directories(dir / "latents");
  for (int r : {0, 2}) write_latent_cache(slices.path(r), slice_of(slices, r));
  // Rank 1 gathers: its own slice from memory, the others from their files.
  LatentCache all = gather_latents(slices, 1, slice_of(slices, 1), 0.13025);
  ASSERT_EQ(all.key.samples.size(), 7u);
  for (uint64_t k = 0; k < 7; ++k) {
    EXPECT_EQ(all.key.samples[k], k);
    EXPECT_EQ(all.mean[2 * k], static_cast<float>(k));
    EXPECT_EQ(all.mean[2 * k + 1], static_cast<float>(k) + 0.5f);
    EXPECT_EQ(all.logvar[2 * k + 1], -static_cast<float>(k) - 0.5f);
  }
}

// Aspect buckets: sample s's latent is 2 x (1 + s % 2) x 1, its values s*10 + j.
LatentCache mixed_slice(const LatentSlices& slices, int rank) {
  LatentCache c;
  c.key = slices.key(rank);
  c.scaling_factor = 0.13025;
  c.channels = 2;
  for (uint64_t s : c.key.samples) {
    const int64_t h = 1 + static_cast<int64_t>(s % 2);
    c.heights.push_back(h), c.widths.push_back(1);
    for (int64_t j = 0; j < 2 * h; ++j) {
      c.mean.push_back(static_cast<float>(s * 10 + static_cast<uint64_t>(j)));
      c.logvar.push_back(-static_cast<float>(s * 10 + static_cast<uint64_t>(j)));
    }
  }
  return c;
}

TEST(LatentGather, SamplesOfDifferentSizesComeBackInShardOrder) {
  ScopedTempDir dir;
  LatentSlices slices(dir.path(), base_key(), 7, 2);
  std::filesystem::create_directories(dir / "latents");
  write_latent_cache(slices.path(1), mixed_slice(slices, 1));
  const std::optional<LatentCache> back = slices.read(1);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->heights, (std::vector<int64_t>{2, 2, 2}));  // samples 1, 3, 5
  LatentCache all = gather_latents(slices, 0, mixed_slice(slices, 0), 0.13025);
  ASSERT_EQ(all.key.samples.size(), 7u);
  const std::vector<size_t> at = all.offsets();
  for (uint64_t k = 0; k < 7; ++k) {
    EXPECT_EQ(all.key.samples[k], k);
    EXPECT_EQ(all.heights[k], 1 + static_cast<int64_t>(k % 2));
    ASSERT_EQ(all.values_of(k), 2u * (1 + k % 2));
    for (size_t j = 0; j < all.values_of(k); ++j) {
      EXPECT_EQ(all.mean[at[k] + j], static_cast<float>(k * 10 + j));
      EXPECT_EQ(all.logvar[at[k] + j], -static_cast<float>(k * 10 + j));
    }
  }
}

TEST(LatentGather, AMissingSliceOrAnotherScalingFactorIsAnError) {
  ScopedTempDir dir;
  LatentSlices slices(dir.path(), base_key(), 4, 2);
  EXPECT_THAT([&] { gather_latents(slices, 0, slice_of(slices, 0), 0.13025); },
              testing::ThrowsMessage<Error>(testing::HasSubstr("the latent cache of rank 1")));
  std::filesystem::create_directories(dir / "latents");
  write_latent_cache(slices.path(1), slice_of(slices, 1, 0.18215));
  EXPECT_THAT([&] { gather_latents(slices, 0, slice_of(slices, 0), 0.13025); },
              testing::ThrowsMessage<Error>(testing::HasSubstr("encoded with the VAE scaling factor 0.18215")));
}

TEST(LatentGather, InShardOrderNamesAMissingSample) {
  LatentSlices slices("/out", base_key(), 4, 2);
  LatentCache c = slice_of(slices, 0);  // samples 0 and 2 only
  EXPECT_THAT([&] { in_shard_order(c); }, testing::ThrowsMessage<Error>(testing::HasSubstr("sample 1 is missing")));
}

}  // namespace
}  // namespace xltune
