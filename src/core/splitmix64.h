// SplitMix64 (Steele, Lea, Flood 2014; Vigna's reference constants): a 64-bit state advanced
// by the golden-ratio increment, output through a fixed mixing function. xltune uses it
// wherever a random choice must be the same on every platform and standard library: the
// sampler's permutations (data/sampler.h) and the keys of the training draws
// (core/keyed_random.h).
#pragma once

#include <cstdint>

namespace xltune {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();
  // Uniform in [0, bound), bound > 0, by rejection of the top partial range.
  uint64_t below(uint64_t bound);

 private:
  uint64_t state_;
};

// The output function alone: a bijection of 64-bit values that mixes every input bit.
uint64_t splitmix64_mix(uint64_t x);

}  // namespace xltune
