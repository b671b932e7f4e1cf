// Note [Keyed draws]: a draw depends on its key alone.
#include "core/keyed_random.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/splitmix64.h"

namespace xltune {
namespace {

at::Tensor draw(uint64_t seed, uint64_t step, uint64_t position, DrawKind kind) {
  at::Generator g = keyed_generator(seed, step, position, kind);
  return at::randn({16}, g);
}

TEST(KeyedRandom, SameKeySameDrawWhateverCameBefore) {
  at::Tensor a = draw(7, 3, 1, DrawKind::kNoise);
  draw(7, 3, 0, DrawKind::kNoise);  // other draws in between change nothing
  draw(7, 2, 1, DrawKind::kTimestep);
  EXPECT_TRUE(at::equal(a, draw(7, 3, 1, DrawKind::kNoise)));
}

TEST(KeyedRandom, EveryPartOfTheKeyMatters) {
  at::Tensor a = draw(7, 3, 1, DrawKind::kNoise);
  EXPECT_FALSE(at::equal(a, draw(8, 3, 1, DrawKind::kNoise)));
  EXPECT_FALSE(at::equal(a, draw(7, 4, 1, DrawKind::kNoise)));
  EXPECT_FALSE(at::equal(a, draw(7, 3, 2, DrawKind::kNoise)));
  EXPECT_FALSE(at::equal(a, draw(7, 3, 1, DrawKind::kLatentSample)));
  // Swapping step and position gives another key (the mix is not symmetric).
  EXPECT_NE(draw_key(7, 3, 1, DrawKind::kNoise), draw_key(7, 1, 3, DrawKind::kNoise));
}

TEST(KeyedRandom, KeyIsTheChainOfNoteKeyedDraws) {
  // The formula the note states, so that a change to it is a visible change to this test.
  const uint64_t want =
      splitmix64_mix(splitmix64_mix(splitmix64_mix(splitmix64_mix(42) ^ 5) ^ 3) ^ static_cast<uint64_t>(DrawKind::kNoise));
  EXPECT_EQ(draw_key(42, 5, 3, DrawKind::kNoise), want);
}

}  // namespace
}  // namespace xltune
