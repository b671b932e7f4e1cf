// The latents of every training image, each encoded once (Note [The job's shape], step 2): rank r
// VAE-encodes its slice, samples r, r + W, r + 2W, ... of the shards, into
// OUTPUT_DIR/latents/latents-rNNNNN.h5 (Note [Latent cache format]), reusing a slice that is
// still fresh; after a barrier every rank reads every slice, back into shard order.
#pragma once

#include <optional>
#include <string>

#include "data/hdf5_shards.h"
#include "data/latent_cache_file.h"
#include "models/vae.h"

namespace xltune {

class LatentSlices {
 public:
  // `base`: the VAE's and the shards' fingerprints and the resolution (its samples are ignored).
  LatentSlices(std::string output_dir, LatentCacheKey base, int64_t num_samples, int world);

  LatentCacheKey key(int rank) const;  // base, with samples rank, rank + W, ...
  std::string path(int rank) const;    // OUTPUT_DIR/latents/latents-rNNNNN.h5
  int world() const { return world_; }
  bool empty(int rank) const { return rank >= num_samples_; }  // more ranks than images
  const LatentCacheKey& base() const { return base_; }  // no samples
  // The slice of `rank` when it was written for this key; nullopt when missing, stale or empty.
  std::optional<LatentCache> read(int rank) const;
  // Encodes the slice of `rank` with `vae` (fp32) and writes it.
  LatentCache encode(int rank, const ShardSet& shards, Vae& vae) const;

 private:
  std::string dir_;
  LatentCacheKey base_;
  int64_t num_samples_;
  int world_;
};

// Every rank's slice (`mine` is `my_rank`'s, already in memory) in shard order: sample k at row
// k. A slice that is missing or stale after the barrier, or encoded with another scaling factor
// than the model's, is an error.
LatentCache gather_latents(const LatentSlices& slices, int my_rank, std::optional<LatentCache> mine,
                           double scaling_factor);

// The rows of `c` sorted by sample index; every sample 0..N-1 must be there.
LatentCache in_shard_order(LatentCache c);

}  // namespace xltune
