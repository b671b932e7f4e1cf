// Face masks with OpenCV's Haar cascade: the face in data/samples/astronaut.png is found, the
// salience crop keeps it, several faces make one mask, no face makes an all-255 mask.
#include "data/face_mask.h"

#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>

#include "data/crop.h"
#include "data/image_decode.h"
#include "data_test_util.h"

namespace xltune {
namespace {

cv::Mat astronaut() {
  return decode_image_file(testing_util::source_dir() + "/data/samples/astronaut.png", "astronaut.png").rgb;
}

// The astronaut (512x512) pasted at x on a grey canvas of the given width.
cv::Mat on_canvas(const cv::Mat& photo, int width, int x) {
  cv::Mat canvas(photo.rows, width, CV_8UC3, cv::Scalar(128, 128, 128));
  photo.copyTo(canvas(cv::Rect(x, 0, photo.cols, photo.rows)));
  return canvas;
}

bool contains(const cv::Rect& outer, const cv::Rect& inner) { return (outer & inner) == inner; }

TEST(FaceMask, FindsTheAstronautsFace) {
  FaceMasker masker;
  cv::Mat photo = astronaut();
  auto faces = masker.detect(photo);
  ASSERT_GE(faces.size(), 1u);
  // Her face is around x 170-260, y 70-170 in the 512x512 photo.
  cv::Point center = (faces[0].tl() + faces[0].br()) / 2;
  EXPECT_TRUE(cv::Rect(150, 50, 130, 150).contains(center)) << faces[0];
  int n = 0;
  cv::Mat mask = masker.mask(photo, &n);
  EXPECT_EQ(n, static_cast<int>(faces.size()));
  EXPECT_EQ(mask.at<uint8_t>(center), FaceMasker::kFace);
  EXPECT_EQ(mask.at<uint8_t>(500, 500), FaceMasker::kBackground);
}

TEST(FaceMask, SalienceCropKeepsTheFace) {
  FaceMasker masker;
  cv::Mat photo = astronaut();
  for (int x : {0, 400, 888}) {
    cv::Mat canvas = on_canvas(photo, 1400, x);
    auto faces = masker.detect(canvas);
    ASSERT_GE(faces.size(), 1u) << "x " << x;
    CropBox box = salience_crop_box(masker.mask(canvas));
    cv::Rect crop(box.left, box.top, box.size, box.size);
    EXPECT_TRUE(contains(crop, faces[0])) << "face " << faces[0] << " outside crop " << crop << " (astronaut at x " << x << ")";
    // A centre crop would cut the face out when the photo sits at an edge.
    if (x == 0) {
      CropBox centre = center_crop_box(canvas.cols, canvas.rows);
      EXPECT_FALSE(contains(cv::Rect(centre.left, centre.top, centre.size, centre.size), faces[0]));
    }
  }
}

TEST(FaceMask, SeveralFacesMakeOneMask) {
  FaceMasker masker;
  cv::Mat photo = astronaut();
  cv::Mat two(photo.rows, photo.cols * 2, CV_8UC3);
  photo.copyTo(two(cv::Rect(0, 0, photo.cols, photo.rows)));
  photo.copyTo(two(cv::Rect(photo.cols, 0, photo.cols, photo.rows)));
  int n = 0;
  cv::Mat mask = masker.mask(two, &n);
  ASSERT_GE(n, 2);
  auto faces = masker.detect(two);
  for (const auto& f : faces) EXPECT_EQ(mask.at<uint8_t>((f.tl() + f.br()) / 2), FaceMasker::kFace) << f;
  EXPECT_EQ(mask.size(), two.size());
}

TEST(FaceMask, NoFaceGivesAFullMask) {
  FaceMasker masker;
  cv::Mat flat = testing_util::pattern_image(300, 200);
  int n = -1;
  cv::Mat mask = masker.mask(flat, &n);
  EXPECT_EQ(n, 0);
  EXPECT_EQ(cv::countNonZero(mask != FaceMasker::kFace), 0);
}

TEST(FaceMask, PlainBufferInterface) {
  FaceMasker masker;
  cv::Mat photo = astronaut();
  RgbImage image{photo.cols, photo.rows, std::vector<uint8_t>(photo.datastart, photo.dataend)};
  GrayImage mask = masker.mask(image, "astronaut.png");
  ASSERT_EQ(mask.pixels.size(), 512u * 512u);
  EXPECT_EQ(mask.pixels[500 * 512 + 500], FaceMasker::kBackground);
}

TEST(FaceMask, MissingCascadeIsAClearError) {
  EXPECT_THROW(FaceMasker("/nonexistent/cascade.xml"), Error);
}

}  // namespace
}  // namespace xltune
