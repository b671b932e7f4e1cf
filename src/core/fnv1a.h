// FNV-1a, 64 bits: a stable hash of a name or a byte string (the same on every machine and run,
// unlike std::hash), for keys of random draws and for content fingerprints.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace xltune {

inline uint64_t fnv1a64(std::string_view bytes) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ULL;
  return h;
}

// fnv1a64 of bytes as 16 hex digits: the content fingerprints of shards, models and inputs.
inline std::string fingerprint_of(std::string_view bytes) {
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(fnv1a64(bytes)));
  return out;
}

}  // namespace xltune
