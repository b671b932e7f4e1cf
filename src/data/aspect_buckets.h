// Aspect-ratio buckets: the image sizes that preprocessing crops to and a training step draws
// from when --aspect_buckets is on.
//
// Note [Aspect buckets]
// The buckets for resolution R, step s and ratio limit q are the sizes w x h such that
//   - w and h are positive multiples of s,
//   - w * h <= R^2 (no bucket costs more than the square one),
//   - max(w / h, h / w) <= q,
//   - each is the largest for its shape: no other such size is at least as wide and at least
//     as high (the Pareto-maximal sizes; for each width, the tallest height that fits, less
//     the ones another bucket contains). Mirror images come in pairs, and R x R is one when R
//     is a multiple of s. For 1024/64/2.0: 704x1408 768x1344 832x1216 896x1152 960x1088
//     1024x1024 1088x960 1152x896 1216x832 1344x768 1408x704, SDXL's own list.
// They are sorted by w / h (portrait first).
//
// An image of W x H goes to the bucket whose log(w / h) is nearest log(W / H) (ties to the
// earlier bucket, the more portrait one), is scaled to cover the bucket and cropped to it along
// one axis only: the crop of the bucket's shape in the original image (the side along which
// the image is too long is cut) is placed as the reference trainer places its square one, around
// the mask's centre of mass, or the centre (data/crop.h, salience_crop_to_shape), then resized to
// w x h (Pillow's Lanczos). With a square bucket this is the reference trainer's crop exactly.
//
// SDXL's size conditioning is the real one (Note [Size conditioning]): the decoded image's size,
// the crop's corner in the image scaled to cover the bucket (scale max(w / W, h / H)), and the
// bucket as the target size. The shards hold each sample at its bucket's size (Note [Shard
// format], version 2), the latent cache each sample's latent size (Note [Latent cache format]);
// the training set groups the samples by size, and the sampler gives every global batch from
// one bucket (Note [Distributed sampler], bucketed), so each step is one tensor shape. Validation
// images and `xltune generate` stay square at R; the trained files do not depend on the buckets.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace xltune {

struct BucketSize {
  int width = 0, height = 0;
  bool operator==(const BucketSize& o) const { return width == o.width && height == o.height; }
  bool operator!=(const BucketSize& o) const { return !(*this == o); }
  bool operator<(const BucketSize& o) const {
    return width != o.width ? width < o.width : height < o.height;
  }
};

std::string bucket_name(const BucketSize& b);  // "1216x832" (width x height)

// The buckets of Note [Aspect buckets], sorted by w / h. Throws Error (naming --bucket_step or
// --max_aspect_ratio) when step or ratio is out of range or no bucket exists.
std::vector<BucketSize> buckets_for(int resolution, int step, double max_ratio);

// The bucket nearest in log aspect ratio to an image of width x height (ties: the earlier).
BucketSize nearest_bucket(const std::vector<BucketSize>& buckets, int width, int height);

}  // namespace xltune
