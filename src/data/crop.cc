#include "data/crop.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "core/check.h"

namespace xltune {

namespace {
// Sums over a 128 Mpx mask reach ~2^63 once scaled by 100; 128 bits keep them exact.
__extension__ typedef __int128 Int128;

// The exact centre of mass: (x_num / den, y_num / den), from
// sum(x * (m + 1/100)) / sum(m + 1/100) = (100 * sum(x*m) + sum(x)) / (100 * sum(m) + pixels).
struct ExactCom {
  Int128 x_num = 0, y_num = 0, den = 1;
};

ExactCom exact_center_of_mass(const cv::Mat& mask) {
  XLTUNE_CHECK(mask.type() == CV_8UC1 && !mask.empty(), "salience crop: expected an 8-bit one-channel mask");
  Int128 sum_xm = 0, sum_ym = 0, sum_m = 0;
  for (int y = 0; y < mask.rows; ++y) {
    const uint8_t* row = mask.ptr<uint8_t>(y);
    int64_t row_m = 0, row_xm = 0;
    for (int x = 0; x < mask.cols; ++x) {
      row_m += row[x];
      row_xm += static_cast<int64_t>(x) * row[x];
    }
    sum_m += row_m;
    sum_xm += row_xm;
    sum_ym += static_cast<Int128>(y) * row_m;
  }
  const Int128 w = mask.cols, h = mask.rows, pixels = w * h;
  const Int128 sum_x = h * (w * (w - 1) / 2), sum_y = w * (h * (h - 1) / 2);
  return {100 * sum_xm + sum_x, 100 * sum_ym + sum_y, 100 * sum_m + pixels};
}

// round(num / den) with ties to even, as Python's round(); den > 0, num >= 0.
int64_t round_half_even(Int128 num, Int128 den) {
  Int128 q = num / den, r = num % den;
  if (2 * r > den || (2 * r == den && (q & 1))) ++q;
  return static_cast<int64_t>(q);
}

// The reference's corner for one axis: clamp(c - other/2, 0, size - other), c = c_num / den,
// then rounded. Kept in fractions with denominator 2*den.
int corner(Int128 c_num, Int128 den, int size, int other) {
  Int128 num = 2 * c_num - static_cast<Int128>(other) * den;
  Int128 twice_den = 2 * den;
  if (num <= 0) return 0;
  if (num >= static_cast<Int128>(size - other) * twice_den) return size - other;
  return static_cast<int>(round_half_even(num, twice_den));
}

CropBox box_from(Int128 cx_num, Int128 cy_num, Int128 den, int width, int height) {
  CropBox box;
  box.size = std::min(width, height);
  if (width > height) {
    box.left = corner(cx_num, den, width, height);
  } else {
    box.top = corner(cy_num, den, height, width);
  }
  return box;
}
// The crop's extent for a shape: (width, height) of the image, one side cut to the shape's ratio.
std::pair<int, int> shape_extent(int width, int height, int shape_w, int shape_h) {
  XLTUNE_CHECK(width > 0 && height > 0 && shape_w > 0 && shape_h > 0, "crop of ", width, "x", height, " to ", shape_w,
               ":", shape_h);
  const int64_t w = width, h = height;
  if (w * shape_h >= h * shape_w) {  // wider than the shape: cut the width
    const int64_t cw = (2 * h * shape_w + shape_h) / (2 * shape_h);  // round(h * shape_w / shape_h), halves up
    return {static_cast<int>(std::clamp<int64_t>(cw, 1, w)), height};
  }
  const int64_t ch = (2 * w * shape_h + shape_w) / (2 * shape_w);
  return {width, static_cast<int>(std::clamp<int64_t>(ch, 1, h))};
}

CropRect rect_from(Int128 cx_num, Int128 cy_num, Int128 den, int width, int height, int shape_w, int shape_h) {
  const auto [cw, ch] = shape_extent(width, height, shape_w, shape_h);
  CropRect r;
  r.width = cw, r.height = ch;
  if (cw < width) r.left = corner(cx_num, den, width, cw);
  if (ch < height) r.top = corner(cy_num, den, height, ch);
  return r;
}
}  // namespace

CropRect salience_crop_to_shape(const cv::Mat& mask, int shape_w, int shape_h) {
  ExactCom com = exact_center_of_mass(mask);
  return rect_from(com.x_num, com.y_num, com.den, mask.cols, mask.rows, shape_w, shape_h);
}

CropRect center_crop_to_shape(int width, int height, int shape_w, int shape_h) {
  return rect_from(width, height, 2, width, height, shape_w, shape_h);
}

CropBox salience_crop_box(const cv::Mat& mask) {
  ExactCom com = exact_center_of_mass(mask);
  return box_from(com.x_num, com.y_num, com.den, mask.cols, mask.rows);
}

CropBox center_crop_box(int width, int height) {
  XLTUNE_CHECK(width > 0 && height > 0, "centre crop: bad size ", width, "x", height);
  // (w/2, h/2) = (w, h) / 2
  return box_from(width, height, 2, width, height);
}

cv::Point2d mask_center_of_mass(const cv::Mat& mask) {
  ExactCom com = exact_center_of_mass(mask);
  return {static_cast<double>(com.x_num) / static_cast<double>(com.den),
          static_cast<double>(com.y_num) / static_cast<double>(com.den)};
}

}  // namespace xltune
