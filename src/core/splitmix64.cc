#include "core/splitmix64.h"

namespace xltune {

uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::next() {
  state_ += 0x9E3779B97F4A7C15ULL;
  return splitmix64_mix(state_);
}

uint64_t SplitMix64::below(uint64_t bound) {
  // 2^64 mod bound values at the top would make small results likelier; draw again there.
  const uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    uint64_t r = next();
    if (r >= threshold) return r % bound;
  }
}

}  // namespace xltune
