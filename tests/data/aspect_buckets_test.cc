// Aspect buckets (Note [Aspect buckets]): the list against one derived by hand and against a
// brute force over every size, and the nearest bucket of a few image sizes.
#include "data/aspect_buckets.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "core/error.h"

namespace xltune {
namespace {

std::vector<BucketSize> list(std::initializer_list<std::pair<int, int>> sizes) {
  std::vector<BucketSize> out;
  for (auto [w, h] : sizes) out.push_back({w, h});
  return out;
}

// The definition, literally: every size that fits, then those no other one contains.
std::vector<BucketSize> brute_force(int R, int s, double q) {
  std::vector<BucketSize> fits, out;
  for (int w = s; w <= R * R / s; w += s)
    for (int h = s; h <= R * R / s; h += s)
      if (int64_t{w} * h <= int64_t{R} * R && std::max(w, h) <= q * std::min(w, h)) fits.push_back({w, h});
  for (const auto& b : fits)
    if (std::none_of(fits.begin(), fits.end(),
                     [&](const BucketSize& o) { return o != b && o.width >= b.width && o.height >= b.height; }))
      out.push_back(b);
  std::sort(out.begin(), out.end());
  return out;
}

TEST(AspectBuckets, SdxlListAt1024) {
  // Derived by hand (and by a Python transcription of the definition): for each width the
  // tallest multiple of 64 with w*h <= 1024^2 and ratio <= 2, less 640x1280, 1280x768 and the
  // like, which a wider and taller bucket contains.
  EXPECT_EQ(buckets_for(1024, 64, 2.0), list({{704, 1408}, {768, 1344}, {832, 1216}, {896, 1152}, {960, 1088},
                                              {1024, 1024}, {1088, 960}, {1152, 896}, {1216, 832}, {1344, 768},
                                              {1408, 704}}));
}

TEST(AspectBuckets, SmallResolutions) {
  EXPECT_EQ(buckets_for(512, 64, 2.0), list({{384, 640}, {448, 576}, {512, 512}, {576, 448}, {640, 384}}));
  EXPECT_EQ(buckets_for(128, 32, 2.0), list({{96, 160}, {128, 128}, {160, 96}}));
  EXPECT_EQ(buckets_for(128, 64, 2.0), list({{128, 128}}));  // one bucket: every image is square
  EXPECT_EQ(buckets_for(512, 64, 1.0), list({{512, 512}}));
}

TEST(AspectBuckets, MatchesTheDefinitionByBruteForce) {
  for (int R : {256, 320, 512, 768, 1024})
    for (int s : {32, 64})
      for (double q : {1.0, 1.5, 2.0, 3.0})
        EXPECT_EQ(buckets_for(R, s, q), brute_force(R, s, q)) << R << " " << s << " " << q;
}

TEST(AspectBuckets, NearestInLogRatio) {
  const auto b = buckets_for(1024, 64, 2.0);
  EXPECT_EQ(nearest_bucket(b, 1000, 1000), (BucketSize{1024, 1024}));
  EXPECT_EQ(nearest_bucket(b, 1920, 1080), (BucketSize{1344, 768}));  // 1.78: log distance .016 vs .196 (1216x832)
  EXPECT_EQ(nearest_bucket(b, 1080, 1920), (BucketSize{768, 1344}));
  EXPECT_EQ(nearest_bucket(b, 3000, 2000), (BucketSize{1216, 832}));  // 1.5: 1.4615 (.026) beats 1.75 (.154)
  EXPECT_EQ(nearest_bucket(b, 5000, 1000), (BucketSize{1408, 704}));  // wider than any: the widest
  EXPECT_EQ(nearest_bucket(b, 100, 1000), (BucketSize{704, 1408}));
  // Halfway in log ratio between 1024x1024 and 1088x960 (sqrt(1.1333)): the earlier one.
  const auto two = list({{1024, 1024}, {1088, 960}});
  EXPECT_EQ(nearest_bucket(two, 1064, 1000), (BucketSize{1024, 1024}));  // 1.064 < 1.0646
  EXPECT_EQ(nearest_bucket(two, 1066, 1000), (BucketSize{1088, 960}));
}

TEST(AspectBuckets, BadOptionsAreNamed) {
  EXPECT_THAT([] { buckets_for(1024, 60, 2.0); }, testing::ThrowsMessage<Error>(testing::HasSubstr("--bucket_step")));
  EXPECT_THAT([] { buckets_for(1024, 64, 0.5); }, testing::ThrowsMessage<Error>(testing::HasSubstr("--max_aspect_ratio")));
}

}  // namespace
}  // namespace xltune
