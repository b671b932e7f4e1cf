// Which samples each rank trains on, step by step: the same answer on every rank and every
// platform, and a position that a checkpoint saves and a resume restores exactly.
//
// Note [Distributed sampler]
// Epoch e's order is a permutation of 0..N-1 made by Fisher-Yates (i from N-1 down to 1, swap
// i with j = uniform(0..i)) driven by SplitMix64 seeded with splitmix64_mix(seed) ^
// splitmix64_mix(e + 1) (core/splitmix64.h; uniform(0..i) by rejection, so no modulo bias).
// No std:: distribution is used: their outputs differ between standard libraries.
//
// World size W: each rank gets the same count per epoch, so every rank runs the same number
// of steps (a collective waits for all). Padding (the default, as PyTorch's
// DistributedSampler): the order is extended by its own first elements to a multiple of W, so
// a few samples are seen twice in an epoch; with drop, the last N mod W are left out of that
// epoch (different ones each epoch). Rank r takes positions r, r+W, r+2W, ... of the extended
// order ("strided"): then step s of W ranks with batch b covers exactly the positions that
// step s of one rank with batch W*b covers, so runs with different world sizes see the same
// samples per step.
//
// Batches do not cross epochs: the last batch of an epoch may be shorter, equally on every
// rank. The position is (epoch, offset), offset = samples this rank consumed in that epoch.
//
// Bucketed (Note [Aspect buckets]): each sample has a bucket, and the sampler is given the
// global batch G (world x samples per rank and step). Epoch e's order: each bucket's samples
// (in shard order) permuted as above with the seed mixed with the bucket's key
// (splitmix64_mix(seed ^ splitmix64_mix(key))), extended by their own first elements (cyclically,
// so a bucket of one image fills a batch) to a multiple of G and cut into global batches of G;
// the batches of all buckets, in bucket-key order, then permuted as above (seed, epoch).
// Ranks take positions strided as above, so global batch k is positions kG .. kG + G - 1 and
// step k of every rank draws from one bucket. The order depends on G and not on W, so 2 ranks
// x b see what 1 rank x 2b sees, and a run resumes on another world size with the same G. No
// short batches: every step is a full G, each from one bucket.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/splitmix64.h"

namespace xltune {


std::vector<uint64_t> epoch_permutation(uint64_t num_samples, uint64_t seed, uint64_t epoch);
// Bucketed, one rank's view aside: the epoch's whole extended order (every global batch in turn).
std::vector<uint64_t> bucketed_epoch_order(const std::vector<uint64_t>& bucket_of_sample, uint64_t seed, uint64_t epoch,
                                           uint64_t global_batch);

struct SamplerPosition {
  uint64_t epoch = 0;
  uint64_t offset = 0;  // samples this rank has consumed in `epoch`
  bool operator==(const SamplerPosition& o) const { return epoch == o.epoch && offset == o.offset; }
};

class DistributedSampler {
 public:
  enum class Remainder { kPad, kDrop };

  // Throws Error for an empty data set, a rank outside 0..W-1, or (drop) fewer samples than ranks.
  DistributedSampler(uint64_t num_samples, int world_size, int rank, uint64_t seed, Remainder remainder = Remainder::kPad);
  // Bucketed: `bucket_of_sample[i]` is sample i's bucket key; `global_batch` G, a multiple of
  // the world size; next_batch must then be asked for G / W samples.
  DistributedSampler(const std::vector<uint64_t>& bucket_of_sample, int world_size, int rank, uint64_t seed,
                     uint64_t global_batch);
  bool bucketed() const { return global_batch_ > 0; }

  uint64_t num_samples() const { return num_samples_; }
  uint64_t per_rank() const { return per_rank_; }  // samples per rank per epoch
  // Steps per epoch for a batch size (the last may be short).
  uint64_t steps_per_epoch(size_t batch_size) const;

  // This rank's next batch (at most batch_size indices); moves to the next epoch at its end.
  std::vector<uint64_t> next_batch(size_t batch_size);
  // The sample this rank takes at (epoch, offset).
  uint64_t index_at(uint64_t epoch, uint64_t offset) const;

  SamplerPosition position() const { return position_; }
  // Continue from a saved position (of a sampler with the same samples, world and seed).
  void restore(const SamplerPosition& position);

 private:
  const std::vector<uint64_t>& order(uint64_t epoch) const;
  std::vector<uint64_t> bucketed_order(uint64_t epoch) const;

  uint64_t num_samples_;
  int world_size_, rank_;
  uint64_t seed_;
  uint64_t per_rank_;
  SamplerPosition position_;
  uint64_t global_batch_ = 0;  // bucketed only
  std::vector<std::vector<uint64_t>> buckets_;  // bucketed: each bucket's samples, by bucket key
  std::vector<uint64_t> bucket_keys_;
  mutable uint64_t cached_epoch_ = UINT64_MAX;
  mutable std::vector<uint64_t> cached_order_;
};

}  // namespace xltune
