#include "data/sampler.h"

#include <algorithm>
#include <map>

#include "core/check.h"

namespace xltune {

std::vector<uint64_t> epoch_permutation(uint64_t num_samples, uint64_t seed, uint64_t epoch) {
  std::vector<uint64_t> order(num_samples);
  for (uint64_t i = 0; i < num_samples; ++i) order[i] = i;
  SplitMix64 rng(splitmix64_mix(seed) ^ splitmix64_mix(epoch + 1));
  for (uint64_t i = num_samples; i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  return order;
}

namespace {
// Each bucket's samples in shard order, by bucket key.
std::map<uint64_t, std::vector<uint64_t>> group_by_bucket(const std::vector<uint64_t>& bucket_of_sample) {
  std::map<uint64_t, std::vector<uint64_t>> groups;
  for (uint64_t i = 0; i < bucket_of_sample.size(); ++i) groups[bucket_of_sample[i]].push_back(i);
  return groups;
}

std::vector<uint64_t> order_of_groups(const std::map<uint64_t, std::vector<uint64_t>>& groups, uint64_t seed,
                                      uint64_t epoch, uint64_t global_batch) {
  std::vector<std::vector<uint64_t>> batches;
  for (const auto& [key, members] : groups) {
    const uint64_t n = members.size();
    const std::vector<uint64_t> p = epoch_permutation(n, splitmix64_mix(seed ^ splitmix64_mix(key)), epoch);
    const uint64_t padded = (n + global_batch - 1) / global_batch * global_batch;
    for (uint64_t first = 0; first < padded; first += global_batch) {
      batches.emplace_back();
      for (uint64_t k = first; k < first + global_batch; ++k) batches.back().push_back(members[p[k % n]]);
    }
  }
  std::vector<uint64_t> out;
  for (uint64_t b : epoch_permutation(batches.size(), seed, epoch))
    out.insert(out.end(), batches[b].begin(), batches[b].end());
  return out;
}
}  // namespace

std::vector<uint64_t> bucketed_epoch_order(const std::vector<uint64_t>& bucket_of_sample, uint64_t seed, uint64_t epoch,
                                           uint64_t global_batch) {
  XLTUNE_CHECK(global_batch > 0 && !bucket_of_sample.empty(), "sampler: empty data set or global batch");
  return order_of_groups(group_by_bucket(bucket_of_sample), seed, epoch, global_batch);
}

DistributedSampler::DistributedSampler(const std::vector<uint64_t>& bucket_of_sample, int world_size, int rank,
                                       uint64_t seed, uint64_t global_batch)
    : num_samples_(bucket_of_sample.size()), world_size_(world_size), rank_(rank), seed_(seed),
      global_batch_(global_batch) {
  XLTUNE_CHECK(num_samples_ > 0, "sampler: the data set has no samples");
  XLTUNE_CHECK(world_size > 0 && rank >= 0 && rank < world_size, "sampler: rank ", rank, " of a world of ", world_size);
  XLTUNE_CHECK(global_batch > 0 && global_batch % static_cast<uint64_t>(world_size) == 0, "sampler: a global batch of ",
               global_batch, " is not shared equally by ", world_size, " ranks");
  uint64_t batches = 0;
  for (const auto& [key, members] : group_by_bucket(bucket_of_sample)) {
    bucket_keys_.push_back(key);
    buckets_.push_back(members);
    batches += (members.size() + global_batch - 1) / global_batch;
  }
  per_rank_ = batches * (global_batch / static_cast<uint64_t>(world_size));
}

std::vector<uint64_t> DistributedSampler::bucketed_order(uint64_t epoch) const {
  std::map<uint64_t, std::vector<uint64_t>> groups;
  for (size_t b = 0; b < buckets_.size(); ++b) groups[bucket_keys_[b]] = buckets_[b];
  return order_of_groups(groups, seed_, epoch, global_batch_);
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
    cached_order_ = bucketed() ? bucketed_order(epoch) : epoch_permutation(num_samples_, seed_, epoch);
    cached_epoch_ = epoch;
  }
  return cached_order_;
}

uint64_t DistributedSampler::index_at(uint64_t epoch, uint64_t offset) const {
  XLTUNE_CHECK(offset < per_rank_, "sampler: offset ", offset, " past the ", per_rank_, " samples of an epoch");
  // Position in the extended order; past N it wraps to the order's start (padding).
  uint64_t global = offset * static_cast<uint64_t>(world_size_) + static_cast<uint64_t>(rank_);
  const std::vector<uint64_t>& o = order(epoch);
  return o[global % o.size()];  // bucketed: the order is exactly per_rank * W long
}

std::vector<uint64_t> DistributedSampler::next_batch(size_t batch_size) {
  XLTUNE_CHECK(batch_size > 0, "sampler: batch size must be positive");
  XLTUNE_CHECK(!bucketed() || batch_size * static_cast<uint64_t>(world_size_) == global_batch_, "sampler: batches of ",
               batch_size, " on ", world_size_, " ranks, but the buckets were cut into global batches of ",
               global_batch_);
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
