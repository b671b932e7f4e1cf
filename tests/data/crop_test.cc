// The salience crop against the reference trainer's rule: unit cases, then every case of
// tests/reference/reference_crop.py (a Python transcription of cog-sdxl's crop with PIL and
// numpy) on the sample photos: same box, and the same pixels after the Lanczos resize.
#include "data/crop.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/atomic_file.h"
#include "data/image_decode.h"
#include "data/lanczos_resize.h"
#include "data_test_util.h"
#include "test_paths.h"

namespace xltune {

// In xltune (not the anonymous namespace) so that gtest finds them by argument lookup.
bool operator==(const CropBox& a, const CropBox& b) { return a.left == b.left && a.top == b.top && a.size == b.size; }
std::ostream& operator<<(std::ostream& o, const CropBox& b) {
  return o << "{left " << b.left << ", top " << b.top << ", size " << b.size << "}";
}

namespace {

TEST(CropRule, CentreCropRoundsHalfToEvenLikePython) {
  EXPECT_EQ(center_crop_box(6, 3), (CropBox{2, 0, 3}));  // 1.5 -> 2
  EXPECT_EQ(center_crop_box(7, 2), (CropBox{2, 0, 2}));  // 2.5 -> 2
  EXPECT_EQ(center_crop_box(9, 2), (CropBox{4, 0, 2}));  // 3.5 -> 4
  EXPECT_EQ(center_crop_box(8, 4), (CropBox{2, 0, 4}));
  EXPECT_EQ(center_crop_box(3, 8), (CropBox{0, 2, 3}));  // portrait: 2.5 -> 2
  EXPECT_EQ(center_crop_box(5, 5), (CropBox{0, 0, 5}));
  EXPECT_EQ(center_crop_box(1, 1), (CropBox{0, 0, 1}));
}

TEST(CropRule, SalienceFollowsTheMaskAndClamps) {
  cv::Mat mask(100, 300, CV_8UC1, cv::Scalar(0));
  mask(cv::Rect(250, 40, 10, 10)).setTo(255);  // far right
  EXPECT_EQ(salience_crop_box(mask), (CropBox{200, 0, 100}));
  mask.setTo(0);
  mask(cv::Rect(0, 0, 4, 4)).setTo(255);  // far left
  EXPECT_EQ(salience_crop_box(mask), (CropBox{0, 0, 100}));
  mask.setTo(0);
  mask(cv::Rect(140, 0, 21, 100)).setTo(255);  // a band centred on x = 150: left = 100
  cv::Point2d com = mask_center_of_mass(mask);
  EXPECT_NEAR(com.x, 150.0, 0.5);
  EXPECT_EQ(salience_crop_box(mask).left, 100);
  // Uniform: centre of mass ((w-1)/2, (h-1)/2) exactly, so left = (299 - 100)/2 = 99.5 -> 100.
  EXPECT_EQ(salience_crop_box(cv::Mat(100, 300, CV_8UC1, cv::Scalar(255))), (CropBox{100, 0, 100}));
  cv::Mat tall(301, 80, CV_8UC1, cv::Scalar(0));
  tall(cv::Rect(0, 290, 80, 11)).setTo(255);
  EXPECT_EQ(salience_crop_box(tall), (CropBox{0, 221, 80}));
}

TEST(CropRule, ShapedCropIsTheSquareCropForASquareShape) {
  cv::RNG rng(7);
  for (auto [w, h] : {std::pair{300, 200}, {200, 300}, {257, 257}, {64, 301}, {999, 1000}}) {
    cv::Mat mask(h, w, CV_8UC1);
    rng.fill(mask, cv::RNG::UNIFORM, 0, 256);
    const CropBox box = salience_crop_box(mask);
    const CropRect rect = salience_crop_to_shape(mask, 128, 128);
    EXPECT_EQ(rect.left, box.left) << w << "x" << h;
    EXPECT_EQ(rect.top, box.top) << w << "x" << h;
    EXPECT_EQ(rect.width, box.size);
    EXPECT_EQ(rect.height, box.size);
    const CropBox centre = center_crop_box(w, h);
    const CropRect centre_rect = center_crop_to_shape(w, h, 64, 64);
    EXPECT_EQ(centre_rect.left, centre.left);
    EXPECT_EQ(centre_rect.top, centre.top);
  }
}

TEST(CropRule, ShapedCropCutsOneSideToTheBucketsRatio) {
  // 600x400 (1.5) to 1216x832 (1.4615): the width is cut to round(400 * 1216 / 832) = 584.6 -> 585,
  // centred: left = round((600 - 585) / 2) = round(7.5) = 8 (half to even).
  EXPECT_EQ(center_crop_to_shape(600, 400, 1216, 832).width, 585);
  EXPECT_EQ(center_crop_to_shape(600, 400, 1216, 832).height, 400);
  EXPECT_EQ(center_crop_to_shape(600, 400, 1216, 832).left, 8);
  EXPECT_EQ(center_crop_to_shape(600, 400, 1216, 832).top, 0);
  // 400x600 to 832x1216: the height is cut to 585, top 8.
  const CropRect p = center_crop_to_shape(400, 600, 832, 1216);
  EXPECT_EQ(p.width, 400);
  EXPECT_EQ(p.height, 585);
  EXPECT_EQ(p.top, 8);
  EXPECT_EQ(p.left, 0);
  // A mask heavy at the right pushes a landscape crop right, clamped at the edge.
  cv::Mat mask(400, 600, CV_8UC1, cv::Scalar(0));
  mask(cv::Rect(590, 0, 10, 400)).setTo(255);
  const CropRect r = salience_crop_to_shape(mask, 1216, 832);
  EXPECT_EQ(r.left, 600 - 585);
  EXPECT_EQ(r.width, 585);
  // A portrait image into a landscape bucket: the height is cut.
  const CropRect q = center_crop_to_shape(400, 600, 1216, 832);
  EXPECT_EQ(q.width, 400);
  EXPECT_EQ(q.height, 274);  // round(400 * 832 / 1216) = 273.68
  EXPECT_EQ(q.top, 163);     // (600 - 274) / 2
}

TEST(CropReference, MatchesThePythonTranscription) {
  const std::string dir = std::string(xltune::test_paths::testdata_dir()) + "/crop";
  std::ifstream in(dir + "/crop_cases.json");
  ASSERT_TRUE(in.good()) << dir << "/crop_cases.json is missing: run tests/reference/reference_crop.py " << dir
                         << " first (ctest runs it as a fixture)";
  nlohmann::json j = nlohmann::json::parse(in);
  const int resolution = j["resolution"];
  int cases = 0, same_as_pil = 0, ties = 0, pixel_checked = 0;
  for (const auto& c : j["cases"]) {
    SCOPED_TRACE(c["case"].get<std::string>());
    ++cases;
    cv::Mat rgb = decode_image_file(c["image"], c["case"]).rgb;
    cv::Mat mask = cv::imread(dir + "/" + c["mask"].get<std::string>(), cv::IMREAD_GRAYSCALE);
    ASSERT_FALSE(mask.empty());
    ASSERT_EQ(rgb.cols, c["width"].get<int>());
    CropBox box = c["salience"].get<bool>() ? salience_crop_box(mask) : center_crop_box(rgb.cols, rgb.rows);
    auto exact = c["exact_box"];
    EXPECT_EQ(box, (CropBox{exact[0], exact[1], exact[2]}));
    auto pil = c["pil_box"];
    const bool pil_square = pil[2].get<int>() - pil[0].get<int>() == pil[3].get<int>() - pil[1].get<int>();
    const bool corner_same = box.left == pil[0].get<int>() && box.top == pil[1].get<int>();
    if (c["tie"].get<bool>()) {
      ++ties;
      EXPECT_LE(std::abs(box.left - pil[0].get<int>()) + std::abs(box.top - pil[1].get<int>()), 1);
    } else {
      EXPECT_TRUE(corner_same) << "reference corner " << pil[0] << "," << pil[1] << " vs " << box;
    }
    if (corner_same) ++same_as_pil;
    if (!corner_same || !pil_square) continue;
    ++pixel_checked;
    cv::Rect r(box.left, box.top, box.size, box.size);
    cv::Mat got_image = lanczos_resize(rgb(r), resolution, resolution);
    cv::Mat got_mask = lanczos_resize(mask(r), resolution, resolution);
    cv::Mat want_image = cv::imread(dir + "/" + c["expected_image"].get<std::string>(), cv::IMREAD_COLOR);
    cv::cvtColor(want_image, want_image, cv::COLOR_BGR2RGB);
    cv::Mat want_mask = cv::imread(dir + "/" + c["expected_mask"].get<std::string>(), cv::IMREAD_GRAYSCALE);
    EXPECT_EQ(cv::norm(got_image, want_image, cv::NORM_INF), 0.0) << "image pixels differ from PIL's";
    EXPECT_EQ(cv::norm(got_mask, want_mask, cv::NORM_INF), 0.0) << "mask pixels differ from PIL's";
  }
  EXPECT_GE(cases, 50);
  std::printf("crop reference: %d cases, corner equal to the literal reference in %d (%d at a .5 tie), "
              "pixels compared in %d\n", cases, same_as_pil, ties, pixel_checked);
}

}  // namespace
}  // namespace xltune
