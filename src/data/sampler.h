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
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/splitmix64.h"

namespace xltune {


std::vector<uint64_t> epoch_permutation(uint64_t num_samples, uint64_t seed, uint64_t epoch);

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

  uint64_t num_samples_;
  int world_size_, rank_;
  uint64_t seed_;
  uint64_t per_rank_;
  SamplerPosition position_;
  mutable uint64_t cached_epoch_ = UINT64_MAX;
  mutable std::vector<uint64_t> cached_order_;
};

}  // namespace xltune
