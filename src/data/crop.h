// The square crop of the reference trainer (preprocess.py, _center_of_mass and
// _crop_to_square), with exact arithmetic:
//
//   centre of mass  cx = sum(x * (m + 0.01)) / sum(m + 0.01), m the mask (0..255), likewise cy;
//                   (w/2, h/2) when crop_based_on_salience is false
//   side            min(w, h)
//   landscape       left = clamp(cx - h/2, 0, w - h), top = 0
//   portrait/square top  = clamp(cy - w/2, 0, h - w), left = 0
//   rounding        PIL's crop rounds the box with Python's round(): half to even
//
// numpy sums floats, so at an exact .5 (a uniform mask, a centre crop with w - h odd) its last
// bit decides the rounding; here the sums are integers and the rounding is exact (the
// reference's intent). PIL also rounds the right/bottom edge separately, so at a .5 its crop
// can come out one pixel wider than high; xltune's crop is always square. The test against a
// Python transcription (tests/reference/reference_crop.py) checks the boxes agree.
#pragma once

#include <opencv2/core/mat.hpp>

namespace xltune {

struct CropBox {
  int left = 0;
  int top = 0;
  int size = 0;  // the side of the square, min(width, height)
};

// A crop of a given shape (Note [Aspect buckets]): the whole image along one axis.
struct CropRect {
  int left = 0, top = 0, width = 0, height = 0;
};

// `mask`: CV_8UC1, the image's size. The box around the mask's centre of mass.
CropBox salience_crop_box(const cv::Mat& mask);
// The box around the image centre (crop_based_on_salience false).
CropBox center_crop_box(int width, int height);
// The crop of shape `shape_w` : `shape_h` (a bucket) of an image of the mask's size: the side
// along which the image is relatively too long is cut to round(other side * ratio), and the
// crop is placed along it as the square one is (clamp(c - extent / 2, 0, size - extent), rounded
// half to even) around the mask's centre of mass (salience) or the image centre. For a square
// shape it is exactly salience_crop_box / center_crop_box.
CropRect salience_crop_to_shape(const cv::Mat& mask, int shape_w, int shape_h);
CropRect center_crop_to_shape(int width, int height, int shape_w, int shape_h);
// For logs and tests: the centre of mass as doubles.
cv::Point2d mask_center_of_mass(const cv::Mat& mask);

}  // namespace xltune
