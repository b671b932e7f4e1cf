// cv::Mat <-> core Image (data/image_convert.h): views share pixels, copies take a crop's own
// pixels (a crop of whole rows is continuous but starts inside its parent), and what has no
// view or no Mat form is refused.
#include "data/image_convert.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "data_test_util.h"

namespace xltune {
namespace {

using testing::HasSubstr;
using testing::ThrowsMessage;

TEST(ImageConvert, AViewSharesTheMatsPixels) {
  const cv::Mat rgb = data_testing::pattern_image(5, 4);
  const ImageView v = image_view(rgb);
  EXPECT_EQ(v.pixels, rgb.data);
  EXPECT_EQ(v.width, 5);
  EXPECT_EQ(v.height, 4);
  EXPECT_EQ(v.channels, 3);
  EXPECT_EQ(v.bytes(), 60u);
  const cv::Mat back = mat_view(v);
  EXPECT_EQ(back.data, rgb.data);
  EXPECT_EQ(back.type(), CV_8UC3);
}

TEST(ImageConvert, CopiesOfCropsHoldTheCropsPixels) {
  const cv::Mat rgb = data_testing::pattern_image(6, 9);
  for (const cv::Rect r : {cv::Rect(0, 3, 6, 6), cv::Rect(1, 2, 4, 4)}) {  // whole rows, then a stride
    const cv::Mat crop = rgb(r);
    const Image copy = to_image(crop);
    ASSERT_EQ(copy.pixels.size(), static_cast<size_t>(r.width) * r.height * 3);
    EXPECT_EQ(cv::countNonZero(to_mat(copy).reshape(1) != crop.clone().reshape(1)), 0) << r;
  }
}

TEST(ImageConvert, GreyRoundTripsAndTheRestIsRefused) {
  cv::Mat grey(3, 2, CV_8UC1);
  for (int i = 0; i < 6; ++i) grey.data[i] = static_cast<uint8_t>(i * 40);
  const Image g = to_image(grey);
  EXPECT_EQ(g.channels, 1);
  EXPECT_EQ(g.pixels, (std::vector<uint8_t>{0, 40, 80, 120, 160, 200}));
  const cv::Mat back = to_mat(g);
  EXPECT_EQ(back.type(), CV_8UC1);
  EXPECT_NE(back.data, g.pixels.data()) << "to_mat copies";
  const cv::Mat rgb = data_testing::pattern_image(6, 6);
  EXPECT_THAT([&] { image_view(rgb(cv::Rect(1, 1, 3, 3))); }, ThrowsMessage<Error>(HasSubstr("copy it with to_image")));
  EXPECT_THAT([&] { to_image(cv::Mat(2, 2, CV_16UC3)); }, ThrowsMessage<Error>(HasSubstr("8-bit image of 1 or 3")));
  Image short_of_bytes{2, 2, 3, std::vector<uint8_t>(5)};
  EXPECT_THAT([&] { to_mat(short_of_bytes); }, ThrowsMessage<Error>(HasSubstr("5 bytes for a 2x2x3 image")));
}

}  // namespace
}  // namespace xltune
