#include "data/image_convert.h"

#include "core/check.h"

namespace xltune {
namespace {

void check_mat(const cv::Mat& m) {
  XLTUNE_CHECK(m.depth() == CV_8U && (m.channels() == 1 || m.channels() == 3) && m.dims == 2,
               "image conversion: expected an 8-bit image of 1 or 3 channels, got type ", m.type());
}

}  // namespace

ImageView image_view(const cv::Mat& m) {
  check_mat(m);
  XLTUNE_CHECK(m.isContinuous(), "image conversion: a ", m.cols, "x", m.rows,
               " image with a row stride (a crop) has no view; copy it with to_image");
  return ImageView(m.data, m.cols, m.rows, m.channels());
}

Image to_image(const cv::Mat& m) {
  check_mat(m);
  // From data, not datastart: a crop of whole rows is continuous but starts inside its parent,
  // whose buffer datastart..dataend spans.
  const cv::Mat c = m.isContinuous() ? m : m.clone();
  return Image{c.cols, c.rows, c.channels(), std::vector<uint8_t>(c.data, c.data + c.total() * c.elemSize())};
}

cv::Mat mat_view(ImageView image) {
  XLTUNE_CHECK(image.pixels != nullptr && image.width > 0 && image.height > 0 &&
                   (image.channels == 1 || image.channels == 3),
               "image conversion: expected an image of 1 or 3 channels, got ", image.width, "x", image.height, "x",
               image.channels);
  return cv::Mat(image.height, image.width, CV_8UC(image.channels), const_cast<uint8_t*>(image.pixels));
}

cv::Mat to_mat(const Image& image) {
  check_image(image, image.channels, "image conversion");
  return mat_view(image).clone();
}

}  // namespace xltune
