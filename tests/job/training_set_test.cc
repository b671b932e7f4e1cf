// Size conditioning (Note [Size conditioning]) against the formula of diffusers'
// train_text_to_image_lora_sdxl.py, transcribed below: it resizes the image so that its short side
// is the resolution (torchvision's Resize: the long side int(res * long / short)), then takes the
// centre crop's corner in that resized frame, round((resized - res) / 2) with Python's round.
#include "job/training_set.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
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

TEST(SizeConditioning, ABucketIsTheTargetAndTheCornerIsInTheCoveringFrame) {
  // 600x400 to the 1216x832 bucket (Note [Aspect buckets]): crop 585x400 at left 8; the image
  // scaled to cover the bucket is max(832 / 400, 1216 / 600) = 2.08 times larger, so the corner
  // is at round(8 * 2.08) = round(16.64) = 17; diffusers' order: (h, w), (top, left), (h, w).
  ShardSample s;
  s.original_height = 400, s.original_width = 600;
  const CropRect r = center_crop_to_shape(600, 400, 1216, 832);
  s.crop_top = r.top, s.crop_left = r.left;
  s.height = 832, s.width = 1216;
  EXPECT_EQ(size_conditioning(s, 1024), (std::vector<float>{400, 600, 0, 17, 832, 1216}));
  // A portrait: 400x600 to 832x1216, crop top 8, the same scale.
  ShardSample p;
  p.original_height = 600, p.original_width = 400;
  const CropRect q = center_crop_to_shape(400, 600, 832, 1216);
  p.crop_top = q.top, p.crop_left = q.left;
  p.height = 1216, p.width = 832;
  EXPECT_EQ(size_conditioning(p, 1024), (std::vector<float>{600, 400, 17, 0, 1216, 832}));
}

TEST(TrainingSet, ABatchOfSamplesOfOneSizeGroup) {
  // Aspect buckets: samples 0 and 2 have 1x2 latents, 1 and 3 have 2x1.
  TrainingSet set;
  set.size_groups.push_back({at::arange(4, at::kFloat).view({2, 1, 1, 2}), -at::arange(4, at::kFloat).view({2, 1, 1, 2}),
                             at::ones({2, 1, 1, 2})});
  set.size_groups.push_back({at::arange(4, at::kFloat).view({2, 1, 2, 1}) + 10, at::zeros({2, 1, 2, 1}),
                             at::ones({2, 1, 2, 1})});
  set.group_of = {0, 1, 0, 1};
  set.row_in_group = {0, 0, 1, 1};
  set.input_ids_1 = at::arange(4, at::kLong).view({4, 1}).repeat({1, 77});
  set.input_ids_2 = set.input_ids_1 + 100;
  set.add_time_ids = at::arange(4, at::kFloat).view({4, 1}).repeat({1, 6});
  set.caption_keys = {0, 1, 2, 3};
  EXPECT_EQ(set.size(), 4);
  const StepBatch b = set.batch({3, 1}, {0, 1});
  EXPECT_EQ(b.latent_mean.sizes().vec(), (std::vector<int64_t>{2, 1, 2, 1}));
  EXPECT_TRUE(at::equal(b.latent_mean.flatten(), at::tensor({12.0f, 13.0f, 10.0f, 11.0f})));
  EXPECT_EQ(b.add_time_ids[0][0].item<float>(), 3.0f);
  const StepBatch c = set.batch({2}, {0});
  EXPECT_TRUE(at::equal(c.latent_logvar.flatten(), at::tensor({-2.0f, -3.0f})));
  EXPECT_THROW(set.batch({0, 1}, {0, 1}), Error);  // two sizes in one batch
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

TrainingSet five_captions() {
  TrainingSet set;
  set.mean = at::arange(5, at::kFloat).view({5, 1, 1, 1});
  set.logvar = -set.mean;
  set.mask = at::ones({5, 1, 1, 1});
  set.input_ids_1 = at::arange(5, at::kLong).view({5, 1}).repeat({1, 77});
  set.input_ids_2 = set.input_ids_1 + 100;
  set.add_time_ids = at::zeros({5, 6});
  set.caption_keys = {0, 1, 2, 3, 4};
  set.empty_ids_1 = at::full({77}, 49407, at::kLong);
  set.empty_ids_2 = at::full({77}, 7, at::kLong);
  set.empty_caption_key = 5;
  return set;
}

// Caption dropout draws per (seed, step, global position): a sample is dropped or not whatever
// else is in its batch (so whatever the world size), the rate holds, and a dropped sample carries
// the empty prompt's ids and key.
TEST(TrainingSet, CaptionDropoutIsDrawnPerPositionAtTheGivenRate) {
  const TrainingSet set = five_captions();
  int64_t dropped = 0, seen = 0;
  for (int64_t step = 1; step <= 200; ++step) {
    StepBatch whole = set.batch({0, 1, 2, 3, 4}, {0, 1, 2, 3, 4});
    dropped += set.drop_captions(whole, 7, step, 0.3);
    seen += 5;
    for (int64_t i = 0; i < 5; ++i) {
      StepBatch alone = set.batch({static_cast<uint64_t>(i)}, {i});
      set.drop_captions(alone, 7, step, 0.3);
      ASSERT_EQ(alone.caption_keys[0], whole.caption_keys[i]) << "step " << step << " position " << i;
      const bool was_dropped = whole.caption_keys[i] == 5;
      EXPECT_EQ(whole.input_ids_1[i][0].item<int64_t>(), was_dropped ? 49407 : i);
      EXPECT_EQ(whole.input_ids_2[i][76].item<int64_t>(), was_dropped ? 7 : 100 + i);
    }
  }
  // 1000 draws at 0.3: the binomial's standard deviation is 14.5; the seed fixes the count.
  EXPECT_NEAR(static_cast<double>(dropped) / seen, 0.3, 0.05) << dropped << " of " << seen;
  StepBatch none = set.batch({0, 1}, {0, 1});
  EXPECT_EQ(set.drop_captions(none, 7, 1, 0.0), 0);
  EXPECT_EQ(none.caption_keys, (std::vector<int64_t>{0, 1}));
  StepBatch all = set.batch({0, 1}, {0, 1});
  EXPECT_EQ(set.drop_captions(all, 7, 1, 1.0), 2);
  EXPECT_EQ(all.caption_keys, (std::vector<int64_t>{5, 5}));
  // The training set's own rows are untouched.
  EXPECT_EQ(set.input_ids_1[0][0].item<int64_t>(), 0);
}

TEST(TrainingSet, MicroBatchesConcatenateInOrder) {
  const TrainingSet set = five_captions();
  const StepBatch joined = concatenated({set.batch({3}, {0}), set.batch({1, 4}, {2, 4})});
  EXPECT_TRUE(at::equal(joined.latent_mean.flatten(), at::tensor({3.0f, 1.0f, 4.0f})));
  EXPECT_EQ(joined.positions, (std::vector<int64_t>{0, 2, 4}));
  EXPECT_EQ(joined.caption_keys, (std::vector<int64_t>{3, 1, 4}));
  EXPECT_EQ(joined.input_ids_2.size(0), 3);
}

}  // namespace
}  // namespace xltune
