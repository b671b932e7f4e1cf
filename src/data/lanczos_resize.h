// Lanczos resampling that gives Pillow's Image.resize(size, Image.LANCZOS) bit for bit on
// 8-bit images, so that xltune's crops match the reference trainer's pixels, not only its
// boxes: core/pil_resample.h on an OpenCV image. (OpenCV's INTER_LANCZOS4 is a fixed 8x8
// kernel that aliases when shrinking photos to 512 px; Pillow's widens with the scale.)
#pragma once

#include <opencv2/core/mat.hpp>

namespace xltune {

// `src`: CV_8UC1 or CV_8UC3 (any channel order). Returns width x height, same type.
cv::Mat lanczos_resize(const cv::Mat& src, int width, int height);

}  // namespace xltune
