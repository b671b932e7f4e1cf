// The whole pipeline on an archive of real photos (data/samples) with caption files and a
// broken image: shards that read back right, a contact sheet, no work folder left behind, an
// old set kept when the input has nothing usable, and the model plug-ins.
#include "data/preprocess.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cmath>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"
#include "data/crop.h"
#include "data/hdf5_shards.h"
#include "data/image_convert.h"
#include "data/image_decode.h"
#include "data/lanczos_resize.h"
#include "data_test_util.h"
#include "test_util.h"

namespace xltune {
namespace {

using namespace data_testing;

std::string sample_file(const std::string& name) { return read_file(source_dir() + "/data/samples/" + name); }

// astronaut (512x512), chelsea (451x300, as JPEG), coffee (600x400) twice under one base name,
// a truncated JPEG, caption.csv for one, a sidecar for another.
std::string make_input(const std::string& dir) {
  cv::Mat chelsea = cv::imread(source_dir() + "/data/samples/chelsea.png", cv::IMREAD_COLOR);
  std::string chelsea_jpg = encode(".jpg", chelsea, {cv::IMWRITE_JPEG_QUALITY, 95});
  std::string broken = chelsea_jpg.substr(0, chelsea_jpg.size() / 2);
  std::string path = dir + "/photos.zip";
  write_archive(path, Kind::kZip,
                {file("set/astronaut.png", sample_file("astronaut.png")), file("set/cat.jpg", chelsea_jpg),
                 file("set/a/coffee.png", sample_file("coffee.png")), file("set/b/coffee.png", sample_file("coffee.png")),
                 file("set/broken.jpg", broken), file("set/caption.csv", "image_file,caption\nastronaut.png,TOK in space\n"),
                 file("set/cat.txt", "a TOK cat on a sofa"), file("__MACOSX/set/._cat.jpg", "junk")});
  return path;
}

PreprocessOptions options_for(const std::string& input, const std::string& out) {
  PreprocessOptions o;
  o.input_images = input;
  o.output_dir = out;
  o.resolution = 64;
  return o;
}

TEST(Preprocess, ArchiveOfPhotosBecomesAShardSet) {
  TempDir temp("preprocess");
  const std::string& dir = temp.path();
  const std::string out = dir + "/out";
  testing::internal::CaptureStderr();
  PreprocessReport report = preprocess(options_for(make_input(dir), out));
  std::string log = testing::internal::GetCapturedStderr();
  EXPECT_EQ(report.images_found, 5u);
  EXPECT_EQ(report.samples, 4u);
  EXPECT_EQ(report.skipped_images, 1u);
  EXPECT_CONTAINS(log, "skipping image set/broken.jpg: JPEG is truncated");
  EXPECT_EQ(report.caption_sources[CaptionSource::kCsv], 1u);
  EXPECT_EQ(report.caption_sources[CaptionSource::kSidecar], 1u);
  EXPECT_EQ(report.caption_sources[CaptionSource::kPrefix], 2u);
  EXPECT_EQ(tree(out), (std::vector<std::string>{"contact_sheet.png", "index.json", "shard-00000.h5"}))
      << "no work folder or partial file may remain";

  ShardSet set(out);
  ASSERT_EQ(set.size(), 4u);
  std::map<std::string, ShardSample> by_name;
  for (uint64_t i = 0; i < set.size(); ++i) {
    ShardSample s = set.read(i);
    by_name[s.source] = s;
  }
  EXPECT_EQ(by_name["set/astronaut.png"].caption, "<s0><s1> in space");
  EXPECT_EQ(by_name["set/cat.jpg"].caption, "a <s0><s1> cat on a sofa");
  EXPECT_EQ(by_name["set/a/coffee.png"].caption, "a photo of <s0><s1>");
  ASSERT_TRUE(by_name.count("set/b/coffee.png"));
  const ShardSample& cat = by_name["set/cat.jpg"];
  EXPECT_EQ(cat.original_height, 300);
  EXPECT_EQ(cat.original_width, 451);
  // Uniform mask: the salience box of a 451x300 uniform mask.
  CropBox box = salience_crop_box(cv::Mat(300, 451, CV_8UC1, cv::Scalar(255)));
  EXPECT_EQ(cat.crop_left, box.left);
  EXPECT_EQ(cat.crop_top, 0);
  EXPECT_EQ(cat.image.size(), 64u * 64u * 3u);
  EXPECT_EQ(cat.mask, std::vector<uint8_t>(64 * 64, 255));
  cv::Mat sheet = cv::imread(out + "/contact_sheet.png");
  EXPECT_GT(sheet.cols, 600);
}

// Aspect buckets (Note [Aspect buckets]): at 128 px with 32 px steps the buckets are 96x160,
// 128x128 and 160x96; a square, a landscape (coffee, 600x400) and a portrait (coffee turned,
// 400x600) photo each go to their own, with the size conditioning SDXL's scripts give.
TEST(Preprocess, AspectBucketsPutLandscapeAndPortraitInTheirBuckets) {
  TempDir temp("preprocess");
  const std::string in = temp / "in", out = temp / "out";
  std::filesystem::create_directories(in);
  cv::Mat coffee = cv::imread(source_dir() + "/data/samples/coffee.png", cv::IMREAD_COLOR), portrait;
  cv::rotate(coffee, portrait, cv::ROTATE_90_CLOCKWISE);
  write_file_atomic(in + "/astronaut.png", sample_file("astronaut.png"));
  write_file_atomic(in + "/coffee.png", encode(".png", coffee, {}));
  write_file_atomic(in + "/portrait.png", encode(".png", portrait, {}));
  PreprocessOptions o = options_for(in, out);
  o.resolution = 128;
  o.aspect_buckets = true;
  o.bucket_step = 32;
  const PreprocessReport report = preprocess(o);
  EXPECT_EQ(report.buckets, (std::map<std::string, uint64_t>{{"128x128", 1}, {"160x96", 1}, {"96x160", 1}}));
  ShardSet set(out);
  ASSERT_EQ(set.size(), 3u);
  EXPECT_TRUE(set.info().aspect_buckets);
  std::map<std::string, ShardSample> by_name;
  for (uint64_t i = 0; i < set.size(); ++i) {
    ShardSample s = set.read(i);
    by_name[s.source] = s;
  }
  const ShardSample& square = by_name["astronaut.png"];
  EXPECT_EQ(square.width, 128);
  EXPECT_EQ(square.height, 128);
  // 600x400 to 160x96 (ratio 1.67): the height is cut to round(600 * 96 / 160) = 360, centred
  // (a uniform mask's centre of mass): top (400 - 360) / 2 = 20.
  const ShardSample& land = by_name["coffee.png"];
  EXPECT_EQ(land.width, 160);
  EXPECT_EQ(land.height, 96);
  EXPECT_EQ(land.original_height, 400);
  EXPECT_EQ(land.original_width, 600);
  EXPECT_EQ(land.crop_top, 20);
  EXPECT_EQ(land.crop_left, 0);
  EXPECT_EQ(land.image.size(), 160u * 96u * 3u);
  EXPECT_EQ(land.mask, std::vector<uint8_t>(160 * 96, 255));
  cv::Mat rgb;
  cv::cvtColor(coffee, rgb, cv::COLOR_BGR2RGB);
  const cv::Mat want = lanczos_resize(rgb(cv::Rect(0, 20, 600, 360)), 160, 96);
  EXPECT_EQ(land.image, std::vector<uint8_t>(want.data, want.data + want.total() * 3));
  const ShardSample& port = by_name["portrait.png"];
  EXPECT_EQ(port.width, 96);
  EXPECT_EQ(port.height, 160);
  EXPECT_EQ(port.crop_top, 0);
  EXPECT_EQ(port.crop_left, 20);
  // The conditioning: the corner in the image scaled to cover the bucket (x 0.2667: 20 -> 5).
  // (These are [orig_h, orig_w, top, left, h, w]; job/training_set's size_conditioning computes
  // them, tested there; here the stored fields it reads.)
  EXPECT_EQ(std::lround(land.crop_top * std::max(96.0 / 400, 160.0 / 600)), 5);
}

TEST(Preprocess, NothingUsableKeepsTheOldSet) {
  TempDir temp("preprocess");
  const std::string& dir = temp.path();
  const std::string out = dir + "/out";
  preprocess(options_for(make_input(dir), out));
  const std::string index = read_file(out + "/index.json");
  write_archive(dir + "/bad.zip", Kind::kZip, {file("x.jpg", jpeg(40, 40).substr(0, 300)), file("y.txt", "hello")});
  testing::internal::CaptureStderr();
  EXPECT_THAT([&] { preprocess(options_for(dir + "/bad.zip", out)); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("none of the 1 images could be used")));
  testing::internal::GetCapturedStderr();
  EXPECT_EQ(read_file(out + "/index.json"), index);
  EXPECT_EQ(ShardSet(out).size(), 4u);
  write_archive(dir + "/empty.zip", Kind::kZip, {});
  EXPECT_THAT([&] { preprocess(options_for(dir + "/empty.zip", out)); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("no images found (0 entries")));
  EXPECT_EQ(tree(out), (std::vector<std::string>{"contact_sheet.png", "index.json", "shard-00000.h5"}));
}

TEST(Preprocess, MaskPromptsWithoutClipsegFallBackToUniformMasks) {
  TempDir temp("preprocess");
  const std::string& dir = temp.path();
  PreprocessOptions o = options_for(make_input(dir), dir + "/out");
  o.mask_target_prompts = "a cat";
  const PreprocessReport r = preprocess(o);  // a warning names --clipseg_model (tests/cli/preprocess_test.sh)
  EXPECT_GT(r.samples, 0u);
  EXPECT_THAT(tree(dir + "/out"), ::testing::Contains("index.json"));
}

// Stand-ins for the models the prep part provides (core/image_models.h).
struct LeftHalfMask : MaskProvider {
  std::string name() const override { return "left half"; }
  Image mask(ImageView rgb, const std::string&) override {
    Image g = Image::filled(rgb.width, rgb.height, 1);
    for (int y = 0; y < rgb.height; ++y)
      for (int x = 0; x < rgb.width / 2; ++x) g.pixels[static_cast<size_t>(y) * rgb.width + x] = 255;
    return g;
  }
};
// Captions in batches of up to 3 images; each names its image, so a mix-up within a batch shows.
struct FixedCaption : Captioner {
  std::vector<std::string> captions(const std::vector<ImageView>& images, const std::vector<std::string>& names) override {
    batches.push_back(images.size());
    std::vector<std::string> out;
    for (const std::string& name : names) out.push_back("tok sitting (" + name + ")");
    return out;
  }
  size_t batch_size() const override { return 3; }
  std::vector<size_t> batches;
};

TEST(Preprocess, ModelPlugInsAreUsed) {
  TempDir temp("preprocess");
  const std::string& dir = temp.path();
  PreprocessOptions o = options_for(make_input(dir), dir + "/out");
  o.mask_target_prompts = "a cat";
  LeftHalfMask masks;
  FixedCaption captions;
  PreprocessModels models;
  models.prompt_masks = &masks;
  models.captioner = &captions;
  testing::internal::CaptureStderr();
  PreprocessReport report = preprocess(o, models);
  testing::internal::GetCapturedStderr();
  EXPECT_EQ(report.caption_sources[CaptionSource::kGenerated], 2u);
  EXPECT_EQ(captions.batches, std::vector<size_t>{2}) << "the two images without a caption, in one batch";
  ShardSet set(dir + "/out");
  for (uint64_t i = 0; i < set.size(); ++i) {
    ShardSample s = set.read(i);
    if (s.source.find("coffee") != std::string::npos) {  // set/a/coffee.png and set/b/coffee.png: their own captions
      EXPECT_EQ(s.caption, "a photo of <s0><s1> <s0><s1> sitting (" + s.source + ")");
    }
    if (s.source == "set/a/coffee.png") {
      EXPECT_EQ(s.caption, "a photo of <s0><s1> <s0><s1> sitting (set/a/coffee.png)");
      EXPECT_EQ(s.crop_left, 0) << "the mask pulls the crop left";
      EXPECT_EQ(s.mask[0], 255);
    }
  }
}

// Records the crops it is given; returns them twice the size (nearest neighbour).
struct RecordingUpscaler : Upscaler {
  Image upscale(ImageView rgb, const std::string&) override {
    crops.push_back(to_image(mat_view(rgb)));
    cv::Mat up;
    cv::resize(mat_view(rgb), up, cv::Size(rgb.width * 2, rgb.height * 2), 0, 0, cv::INTER_NEAREST);
    return to_image(up);
  }
  std::vector<Image> crops;
};

TEST(Preprocess, TheUpscalerGetsTheCropOfASmallImage) {
  TempDir temp("preprocess");
  const std::string& dir = temp.path();
  // Portrait: the square crop spans whole rows below the top, the case a crop's buffer can hide.
  const std::string tall = encode(".png", pattern_image(40, 60));
  write_archive(dir + "/small.zip", Kind::kZip, {file("tall.png", tall)});
  RecordingUpscaler upscaler;
  PreprocessModels models;
  models.upscaler = &upscaler;
  testing::internal::CaptureStderr();
  preprocess(options_for(dir + "/small.zip", dir + "/out"), models);
  testing::internal::GetCapturedStderr();
  const ShardSample s = ShardSet(dir + "/out").read(0);
  EXPECT_EQ(s.crop_top, 10) << "the uniform mask centres the crop: rows 10 to 49";
  const cv::Mat rgb = decode_image(tall, "tall.png").rgb;
  ASSERT_EQ(upscaler.crops.size(), 1u);
  EXPECT_EQ(upscaler.crops[0].pixels, to_image(rgb(cv::Rect(0, s.crop_top, 40, 40))).pixels);
}

TEST(Preprocess, FaceDetectionAndMaxImages) {
  TempDir temp("preprocess");
  const std::string& dir = temp.path();
  PreprocessOptions o = options_for(make_input(dir), dir + "/out");
  o.use_face_detection_instead = true;
  o.max_images = 2;  // set/a/coffee.png and set/astronaut.png
  testing::internal::CaptureStderr();
  PreprocessReport report = preprocess(o);
  std::string log = testing::internal::GetCapturedStderr();
  EXPECT_EQ(report.samples, 2u);
  EXPECT_EQ(report.faces, 1u);
  EXPECT_CONTAINS(log, "set/astronaut.png: 512x512, crop 512x512 at (0, 0), 1 face");
}

}  // namespace
}  // namespace xltune
