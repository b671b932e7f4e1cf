#include "data/sampler.h"

#include <algorithm>

#include "core/check.h"

namespace xltune {

std::vector<uint64_t> epoch_permutation(uint64_t num_samples, uint64_t seed, uint64_t epoch) {
  std::vector<uint64_t> order(num_samples);
  for (uint64_t i = 0; i < num_samples; ++i) order[i] = i;
  SplitMix64 rng(splitmix64_mix(seed) ^ splitmix64_mix(epoch + 1));
  for (uint64_t i = num_samples; i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  return order;
}

DistributedSampler::DistributedSampler(uint64_t num_samples, int world_size, int rank, uint64_t seed, Remainder remainder)
    : num_samples_(num_samples), world_size_(world_size), rank_(rank), seed_(seed) {
  XLTUNE_CHECK(num_samples > 0, "sampler: the data set has no samples");
  XLTUNE_CHECK(world_size > 0 && rank >= 0 && rank < world_size, "sampler: rank ", rank, " of a world of ", world_size);
  const auto w = static_cast<uint64_t>(world_size);
  if (remainder == Remainder::kPad) {
    per_rank_ = (num_samples + w - 1) / w;
  } else {
    per_rank_ = num_samples / w;
    XLTUNE_CHECK(per_rank_ > 0, "sampler: ", num_samples, " samples cannot be shared by ", world_size,
                 " ranks without padding");
  }
}

uint64_t DistributedSampler::steps_per_epoch(size_t batch_size) const {
  XLTUNE_CHECK(batch_size > 0, "sampler: batch size must be positive");
  return (per_rank_ + batch_size - 1) / batch_size;
}

const std::vector<uint64_t>& DistributedSampler::order(uint64_t epoch) const {
  if (epoch != cached_epoch_) {
    cached_order_ = epoch_permutation(num_samples_, seed_, epoch);
    cached_epoch_ = epoch;
  }
  return cached_order_;
}

uint64_t DistributedSampler::index_at(uint64_t epoch, uint64_t offset) const {
  XLTUNE_CHECK(offset < per_rank_, "sampler: offset ", offset, " past the ", per_rank_, " samples of an epoch");
  // Position in the extended order; past N it wraps to the order's start (padding).
  uint64_t global = offset * static_cast<uint64_t>(world_size_) + static_cast<uint64_t>(rank_);
  return order(epoch)[global % num_samples_];
}

std::vector<uint64_t> DistributedSampler::next_batch(size_t batch_size) {
  XLTUNE_CHECK(batch_size > 0, "sampler: batch size must be positive");
  std::vector<uint64_t> out;
  const uint64_t n = std::min<uint64_t>(batch_size, per_rank_ - position_.offset);
  for (uint64_t k = 0; k < n; ++k) out.push_back(index_at(position_.epoch, position_.offset + k));
  position_.offset += n;
  if (position_.offset == per_rank_) {
    ++position_.epoch;
    position_.offset = 0;
  }
  return out;
}

void DistributedSampler::restore(const SamplerPosition& position) {
  XLTUNE_CHECK(position.offset < per_rank_, "sampler: cannot resume at offset ", position.offset, " of epoch ",
               position.epoch, ": an epoch has ", per_rank_, " samples per rank here (was the world size or the data "
               "set changed?)");
  position_ = position;
}

}  // namespace xltune
