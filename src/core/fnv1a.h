// FNV-1a, 64 bits: a stable hash of a name or a byte string (the same on every machine and run,
// unlike std::hash), for keys of random draws and for content fingerprints.
#pragma once

#include <cstdint>
#include <string_view>

namespace xltune {

inline uint64_t fnv1a64(std::string_view bytes) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ULL;
  return h;
}

}  // namespace xltune
