#include "job/latent_gather.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <utility>

#include "core/check.h"
#include "core/log.h"
#include "job/training_set.h"

namespace fs = std::filesystem;

namespace xltune {
namespace {

// Images per VAE forward when encoding: 4 at 1024 px is ~10 GB of fp32 activations on a GPU.
constexpr int64_t kEncodeBatch = 4;

}  // namespace

LatentSlices::LatentSlices(std::string output_dir, LatentCacheKey base, int64_t num_samples, int world)
    : dir_(std::move(output_dir) + "/latents"), base_(std::move(base)), num_samples_(num_samples), world_(world) {
  base_.samples.clear();
}

LatentCacheKey LatentSlices::key(int rank) const {
  LatentCacheKey k = base_;
  for (int64_t i = rank; i < num_samples_; i += world_) k.samples.push_back(static_cast<uint64_t>(i));
  return k;
}

std::string LatentSlices::path(int rank) const {
  char name[40];
  std::snprintf(name, sizeof name, "/latents-r%05d.h5", rank);
  return dir_ + name;
}

std::optional<LatentCache> LatentSlices::read(int rank) const {
  if (empty(rank)) return std::nullopt;
  return read_latent_cache(path(rank), key(rank));
}

LatentCache LatentSlices::encode(int rank, const ShardSet& shards, Vae& vae) const {
  const LatentCacheKey k = key(rank);
  LatentCache c = encode_latents(shards, vae, k.samples, k, kEncodeBatch);
  fs::create_directories(dir_);
  write_latent_cache(path(rank), c);
  return c;
}

LatentCache gather_latents(const LatentSlices& slices, int my_rank, std::optional<LatentCache> mine,
                           double scaling_factor) {
  LatentCache all;
  all.key = slices.base();
  for (int r = 0; r < slices.world(); ++r) {
    const LatentCacheKey k = slices.key(r);
    if (k.samples.empty()) continue;
    std::optional<LatentCache> part = r == my_rank ? std::move(mine) : read_latent_cache(slices.path(r), k);
    XLTUNE_CHECK(part.has_value(), "rank ", my_rank, ": the latent cache of rank ", r, " (", slices.path(r),
                 ") is missing or stale after the barrier");
    XLTUNE_CHECK(part->scaling_factor == scaling_factor, slices.path(r), ": encoded with the VAE scaling factor ",
                 part->scaling_factor, ", the model's is ", scaling_factor);
    all.scaling_factor = part->scaling_factor;
    all.channels = part->channels;
    // Appended slice after slice; in_shard_order interleaves them (slice r holds r, r + W, ...).
    all.key.samples.insert(all.key.samples.end(), k.samples.begin(), k.samples.end());
    all.heights.insert(all.heights.end(), part->heights.begin(), part->heights.end());
    all.widths.insert(all.widths.end(), part->widths.begin(), part->widths.end());
    all.mean.insert(all.mean.end(), part->mean.begin(), part->mean.end());
    all.logvar.insert(all.logvar.end(), part->logvar.begin(), part->logvar.end());
  }
  return in_shard_order(std::move(all));
}

LatentCache in_shard_order(LatentCache c) {
  const size_t n = c.key.samples.size();
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return c.key.samples[a] < c.key.samples[b]; });
  const std::vector<size_t> from = c.offsets();  // each sample's values may differ in size (Note [Aspect buckets])
  LatentCache out = c;
  size_t to = 0;
  for (size_t k = 0; k < n; ++k) {
    const size_t i = order[k], per = c.values_of(i);
    out.key.samples[k] = c.key.samples[i];
    out.heights[k] = c.heights[i], out.widths[k] = c.widths[i];
    const auto src = static_cast<std::ptrdiff_t>(from[i]), dst = static_cast<std::ptrdiff_t>(to);
    std::copy_n(c.mean.begin() + src, per, out.mean.begin() + dst);
    std::copy_n(c.logvar.begin() + src, per, out.logvar.begin() + dst);
    to += per;
  }
  for (size_t k = 0; k < n; ++k)
    XLTUNE_CHECK(out.key.samples[k] == k, "latent cache: sample ", k, " is missing from every rank's slice");
  return out;
}

}  // namespace xltune
