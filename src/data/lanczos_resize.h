// Lanczos resampling that gives Pillow's Image.resize(size, Image.LANCZOS) bit for bit on
// 8-bit images, so that xltune's crops match the reference trainer's pixels, not only its
// boxes. Pillow's algorithm (libImaging/Resample.c): separable, a 3-lobe Lanczos kernel
// widened by the scale factor when shrinking (so it low-pass filters, unlike OpenCV's
// INTER_LANCZOS4, a fixed 8x8 kernel that aliases when shrinking photos to 512 px), weights
// normalised per output pixel, fixed point with 22 fraction bits, horizontal pass first,
// rounded to 8 bits between the passes.
//
// Pass order: Pillow up to 12 always resamples horizontally first, as here. Pillow 13
// (python-pillow/Pillow#9549) runs the vertical pass first when the height shrinks much more
// than the width; then results can differ by 1 in a few pixels. Preprocessing only resizes
// square crops to squares (equal scales), where both orders agree bit for bit (tested).
#pragma once

#include <opencv2/core/mat.hpp>

namespace xltune {

// `src`: CV_8UC1 or CV_8UC3 (any channel order). Returns width x height, same type.
cv::Mat lanczos_resize(const cv::Mat& src, int width, int height);

}  // namespace xltune
