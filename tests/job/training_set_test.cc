// Size conditioning (Note [Size conditioning]) against the formula of diffusers'
// train_text_to_image_lora_sdxl.py, transcribed below: it resizes the image so that its short side
// is the resolution (torchvision's Resize: the long side int(res * long / short)), then takes the
// centre crop's corner in that resized frame, round((resized - res) / 2) with Python's round.
#include "job/training_set.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "data/crop.h"

namespace xltune {
namespace {

// Python's round(): halves to even.
int64_t python_round(double x) { return static_cast<int64_t>(std::nearbyint(x)); }

struct Corner {
  int64_t top, left;
};
Corner diffusers_center_crop_corner(int h, int w, int res) {
  int64_t rh = res, rw = res;
  if (h <= w) rw = static_cast<int64_t>(static_cast<double>(res) * w / h);
  else rh = static_cast<int64_t>(static_cast<double>(res) * h / w);
  return {std::max<int64_t>(0, python_round((rh - res) / 2.0)), std::max<int64_t>(0, python_round((rw - res) / 2.0))};
}

ShardSample centre_cropped(int h, int w) {
  const CropBox box = center_crop_box(w, h);
  ShardSample s;
  s.original_height = h, s.original_width = w;
  s.crop_top = box.top, s.crop_left = box.left;
  return s;
}

TEST(SizeConditioning, MatchesDiffusersWithinOnePixelOfTheResizedFrame) {
  // Our crop is taken in the original image and scaled; diffusers' in the resized one: the two
  // roundings differ by at most one pixel (measured over this grid: 1) when the image is
  // downscaled, and by at most half the upscale factor plus one when it is upscaled.
  int compared = 0, exact = 0;
  for (int res : {512, 1024}) {
    for (int h = 64; h < 2500; h += 37) {
      for (int w = 64; w < 2500; w += 53) {
        const std::vector<float> ids = size_conditioning(centre_cropped(h, w), res);
        const Corner d = diffusers_center_crop_corner(h, w, res);
        ASSERT_EQ(ids.size(), 6u);
        EXPECT_EQ(ids[0], h);
        EXPECT_EQ(ids[1], w);
        EXPECT_EQ(ids[4], res);
        EXPECT_EQ(ids[5], res);
        const double upscale = static_cast<double>(res) / std::min(h, w);
        const double tolerance = upscale <= 1 ? 1.0 : std::ceil(upscale / 2) + 1;
        EXPECT_LE(std::abs(ids[2] - d.top), tolerance) << h << "x" << w << " at " << res;
        EXPECT_LE(std::abs(ids[3] - d.left), tolerance) << h << "x" << w << " at " << res;
        ++compared;
        exact += ids[2] == d.top && ids[3] == d.left;
      }
    }
  }
  EXPECT_GT(exact, compared / 2);  // most corners agree exactly
}

TEST(SizeConditioning, ASquareImageHasNoCrop) {
  const std::vector<float> ids = size_conditioning(centre_cropped(700, 700), 1024);
  EXPECT_EQ(ids, (std::vector<float>{700, 700, 0, 0, 1024, 1024}));
}

TEST(TrainingSet, ABatchHoldsTheRowsOfItsSamplesAtTheirPositions) {
  TrainingSet set;
  set.mean = at::arange(5, at::kFloat).view({5, 1, 1, 1});
  set.logvar = -set.mean;
  set.mask = set.mean * 10;
  set.input_ids_1 = at::arange(5, at::kLong).view({5, 1}).repeat({1, 77});
  set.input_ids_2 = set.input_ids_1 + 100;
  set.add_time_ids = at::arange(5, at::kFloat).view({5, 1}).repeat({1, 6});
  set.caption_keys = {10, 11, 12, 11, 14};
  const StepBatch b = set.batch({3, 0}, {1, 3});
  EXPECT_TRUE(at::equal(b.latent_mean.flatten(), at::tensor({3.0f, 0.0f})));
  EXPECT_TRUE(at::equal(b.latent_logvar.flatten(), at::tensor({-3.0f, -0.0f})));
  EXPECT_TRUE(at::equal(b.mask.flatten(), at::tensor({30.0f, 0.0f})));
  EXPECT_EQ(b.input_ids_1[0][76].item<int64_t>(), 3);
  EXPECT_EQ(b.input_ids_2[1][0].item<int64_t>(), 100);
  EXPECT_EQ(b.add_time_ids[0][5].item<float>(), 3.0f);
  EXPECT_EQ(b.positions, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(b.caption_keys, (std::vector<int64_t>{11, 10}));
}

}  // namespace
}  // namespace xltune
