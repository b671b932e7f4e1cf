// The training samples of this rank, in memory on the training device: the latent
// distribution of each image (from the latent cache), its loss mask at latent size, the token
// ids of its caption for both tokenizers, and SDXL's size conditioning. A few hundred photos at
// 1024 px are a few hundred MB of latents: holding them beats reading shards every step.
//
// Note [Size conditioning]
// add_time_ids = [orig_h, orig_w, crop_top, crop_left, res, res]: the decoded (upright) image's
// size, and the corner of the square crop in the frame of that image resized so that its short
// side is `res` (round(corner * res / min(h, w))), as diffusers' SDXL script computes it
// (it resizes first, then crops) and SGM was trained. The reference trainer sends
// [R, R, 0, 0, R, R] with R = 768 while training at 512 (a bug).
// With aspect buckets (Note [Aspect buckets]) the sample is H x W (its bucket): add_time_ids =
// [orig_h, orig_w, round(crop_top * s), round(crop_left * s), H, W] with s = max(H / orig_h,
// W / orig_w), the scale that makes the image cover the bucket; for R x R that is the above.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "data/hdf5_shards.h"
#include "data/latent_cache_file.h"
#include "sdxl/sdxl_model.h"
#include "text/clip_tokenizer.h"
#include "train/trainer.h"

namespace xltune {

struct TrainingSet {
  // Every sample of one size (no aspect buckets): all of them here.
  at::Tensor mean, logvar;  // [N, C, h, w] fp32
  at::Tensor mask;          // [N, 1, h, w] fp32, 1 = counts fully
  // Samples of several sizes (Note [Aspect buckets]): mean, logvar and mask are undefined and
  // each size has its tensors; sample i is row row_in_group[i] of group group_of[i]. A batch
  // takes samples of one group only (the bucketed sampler's global batches are).
  struct SizeGroup {
    at::Tensor mean, logvar, mask;  // [n, C, h, w], [n, 1, h, w]
  };
  std::vector<SizeGroup> size_groups;
  std::vector<int64_t> group_of, row_in_group;
  at::Tensor input_ids_1, input_ids_2;  // [N, 77] int64
  at::Tensor add_time_ids;  // [N, 6] fp32
  std::vector<int64_t> caption_keys;   // equal for samples with equal captions
  std::vector<std::string> captions, sources;
  std::vector<int64_t> shard_samples;  // each row's sample in the shards (metrics name samples by it)
  // The empty prompt's token ids ([77] each) and its caption key (a caption's own when one is
  // empty), for caption dropout.
  at::Tensor empty_ids_1, empty_ids_2;
  int64_t empty_caption_key = -1;
  int64_t size() const { return mean.defined() ? mean.size(0) : static_cast<int64_t>(group_of.size()); }
  // Each sample's latent size as one key, (h << 32) | w: its bucket, for the bucketed sampler.
  std::vector<uint64_t> size_keys() const;
  // The set of rows `rows` (in that order), each keeping its caption key and shard sample.
  TrainingSet subset(const std::vector<int64_t>& rows) const;

  // The batch of samples `indices` (shard order) at global batch `positions`.
  StepBatch batch(const std::vector<uint64_t>& indices, const std::vector<int64_t>& positions) const;
  // Caption dropout: each sample of `batch` trains on the empty prompt with probability `rate`,
  // drawn from (seed, step, its global position) (DrawKind::kCaptionDropout), so that the choice
  // does not depend on the world size. The text cache keeps working: the empty prompt has a key.
  // Returns how many samples were dropped.
  int64_t drop_captions(StepBatch& batch, uint64_t seed, int64_t step, double rate) const;
};

// The micro-batches of a step as one batch (for the step dump).
StepBatch concatenated(const std::vector<StepBatch>& batches);

// [orig_h, orig_w, crop_top, crop_left, H, W] (Note [Size conditioning]); H x W the sample's
// size (s.height, s.width), or resolution x resolution where those are 0.
std::vector<float> size_conditioning(const ShardSample& s, int resolution);

// VAE-encodes shard samples `indices` (fp32, in batches of `batch_size`) into a latent cache.
LatentCache encode_latents(const ShardSet& shards, Vae& vae, const std::vector<uint64_t>& indices,
                           const LatentCacheKey& key, int64_t batch_size);

// Both tokenizers of `model` with pivotal tuning's new tokens <s0> <s1> added: they get the ids
// after the vocabulary, which must be the rows the trainer adds to the text encoders' embeddings
// (a model whose tokenizers and encoders disagree is an error naming `model_path`).
struct TrainingTokenizers {
  ClipTokenizer first, second;
};
TrainingTokenizers load_training_tokenizers(const SdxlModel& model, const std::string& model_path);

TrainingSet build_training_set(const ShardSet& shards, const LatentCache& latents, const ClipTokenizer& tokenizer_1,
                               const ClipTokenizer& tokenizer_2, at::Device device);

}  // namespace xltune
