// cv::Mat <-> core Image (core/image.h), the one place where data's images meet the type the
// preprocessing models take and give (core/image_models.h). 8-bit only, 1 or 3 channels, in the
// Mat's own channel order (data's decoded images are RGB: data/image_decode.h).
#pragma once

#include <opencv2/core/mat.hpp>

#include "core/image.h"

namespace xltune {

// A view of m's pixels, no copy: m must be continuous (a whole decoded image; a crop of a wider
// image has a stride, so copy it with to_image). Valid while m's pixels are.
ImageView image_view(const cv::Mat& m);
// A copy of m's pixels: any 8-bit Mat of 1 or 3 channels, a crop too.
Image to_image(const cv::Mat& m);
// A Mat over the view's pixels, no copy (for reading: encoding, resizing); valid while they are.
cv::Mat mat_view(ImageView image);
// A Mat that owns a copy of the image's pixels.
cv::Mat to_mat(const Image& image);

}  // namespace xltune
