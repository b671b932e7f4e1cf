#include "core/keyed_random.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>

#include "core/splitmix64.h"

namespace xltune {

uint64_t draw_key(uint64_t seed, uint64_t step, uint64_t position, DrawKind kind) {
  uint64_t h = splitmix64_mix(seed);
  h = splitmix64_mix(h ^ step);
  h = splitmix64_mix(h ^ position);
  return splitmix64_mix(h ^ static_cast<uint64_t>(kind));
}

at::Generator keyed_generator(uint64_t seed, uint64_t step, uint64_t position, DrawKind kind) {
  return at::make_generator<at::CPUGeneratorImpl>(draw_key(seed, step, position, kind));
}

}  // namespace xltune
