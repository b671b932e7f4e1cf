// The latent cache: each training image VAE-encoded once, as the mean and log-variance of its
// latent distribution (fp32), so that every step draws a fresh latent sample from it
// (Note [Keyed draws]) and the VAE never runs again.
//
// Note [Latent cache format] (format "xltune-latents", version 2)
// One HDF5 file per rank's slice, written whole (temp file, fsync, rename):
//   /mean          float32 [N, C, h, w] when every sample has one size; else flat
//                  [sum of C h_i w_i], sample after sample (aspect buckets, Note [Aspect buckets])
//   /logvar        float32, as /mean   (clamped to [-30, 20], as diffusers does)
//   /latent_sizes  int32 [N, 2]        (h, w) of each sample's latent
//   /samples       int64 [N]           the shard set's sample index of each row
// Version 1 had no /latent_sizes; such a cache is stale (encoded again).
// Root attributes: format, format_version, scaling_factor (the VAE config's), resolution,
// vae (a fingerprint of the VAE: its config and weights file), shards (a fingerprint of the
// shard set's index.json). A cache whose fingerprints, resolution or samples differ from what
// the run needs is stale: it is encoded again (and says why), never used.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace xltune {

constexpr const char* kLatentCacheFormat = "xltune-latents";
constexpr int kLatentCacheFormatVersion = 2;

struct LatentCacheKey {
  std::string vae_fingerprint;
  std::string shards_fingerprint;
  int64_t resolution = 0;
  std::vector<uint64_t> samples;  // which shard samples, in order
};

struct LatentCache {
  LatentCacheKey key;
  double scaling_factor = 0;
  int64_t channels = 0;
  std::vector<int64_t> heights, widths;  // each sample's latent size
  std::vector<float> mean, logvar;       // C * h_i * w_i for each sample i, in turn

  size_t values_of(size_t i) const { return static_cast<size_t>(channels * heights[i] * widths[i]); }
  // Where sample i's values start in mean and logvar.
  std::vector<size_t> offsets() const;
  bool one_size() const;  // every sample the same h x w
};

void write_latent_cache(const std::string& path, const LatentCache& cache);
// The cache at `path` if it exists and was made for `key`; nullopt (with a log line saying
// why) when it is missing or stale. A file that is not a latent cache at all is an error.
std::optional<LatentCache> read_latent_cache(const std::string& path, const LatentCacheKey& key);

}  // namespace xltune
