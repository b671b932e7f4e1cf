#include "data/aspect_buckets.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace xltune {

std::string bucket_name(const BucketSize& b) { return std::to_string(b.width) + "x" + std::to_string(b.height); }

std::vector<BucketSize> buckets_for(int resolution, int step, double max_ratio) {
  XLTUNE_CHECK(step >= 8 && step % 8 == 0 && step <= resolution, "--bucket_step: expected a multiple of 8 from 8 to ",
               "--resolution ", resolution, ", got ", step);
  XLTUNE_CHECK(max_ratio >= 1.0 && max_ratio <= 16.0, "--max_aspect_ratio: expected 1 to 16, got ", max_ratio);
  const int64_t area = int64_t{resolution} * resolution;
  // For each width, the tallest height within the area and the ratio; then the Pareto-maximal.
  std::vector<BucketSize> tallest;
  for (int64_t w = step; w * step <= area; w += step) {
    int64_t h = area / w / step * step;
    h = std::min<int64_t>(h, static_cast<int64_t>(std::floor(static_cast<double>(w) * max_ratio / step)) * step);
    if (h < step || static_cast<double>(w) > max_ratio * static_cast<double>(h)) continue;
    tallest.push_back({static_cast<int>(w), static_cast<int>(h)});
  }
  std::vector<BucketSize> out;
  for (const BucketSize& b : tallest) {
    const bool contained = std::any_of(tallest.begin(), tallest.end(), [&](const BucketSize& o) {
      return o != b && o.width >= b.width && o.height >= b.height;
    });
    if (!contained) out.push_back(b);
  }
  XLTUNE_CHECK(!out.empty(), "--bucket_step ", step, ": no bucket fits --resolution ", resolution);
  // Widths grow and heights shrink along a Pareto front: sorted by width is sorted by w / h.
  std::sort(out.begin(), out.end());
  return out;
}

BucketSize nearest_bucket(const std::vector<BucketSize>& buckets, int width, int height) {
  XLTUNE_CHECK(!buckets.empty() && width > 0 && height > 0, "nearest bucket of ", width, "x", height);
  const double want = std::log(static_cast<double>(width) / height);
  size_t best = 0;
  double best_distance = INFINITY;
  for (size_t i = 0; i < buckets.size(); ++i) {
    const double d = std::abs(std::log(static_cast<double>(buckets[i].width) / buckets[i].height) - want);
    if (d < best_distance) best = i, best_distance = d;
  }
  return buckets[best];
}

}  // namespace xltune
