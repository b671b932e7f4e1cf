#include "data/lanczos_resize.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include <opencv2/core.hpp>

#include "core/check.h"

namespace xltune {

namespace {
constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS
constexpr double kSupport = 3.0;

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return std::sin(x) / x;
}
double lanczos(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0; }

// Pillow's clip8: the accumulator (with its rounding half added) >> 22, clamped to 0..255.
inline uint8_t clip8(int value) {
  int v = value >> kPrecisionBits;  // arithmetic shift: floor, as Pillow's lookup table index
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// For each output index: the first input index, how many inputs, and fixed-point weights
// (precompute_coeffs + normalize_coeffs_8bpc).
struct Coefficients {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> weights;  // out_size x ksize
};

Coefficients precompute(int in_size, int out_size) {
  Coefficients c;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = kSupport * filterscale;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);  // truncation, as in C
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      k[x] = lanczos((x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (int x = 0; x < xmax; ++x) {
      double w = ww != 0.0 ? k[x] / ww : k[x];
      c.weights[static_cast<size_t>(xx) * c.ksize + x] =
          static_cast<int32_t>(w < 0 ? -0.5 + w * (1 << kPrecisionBits) : 0.5 + w * (1 << kPrecisionBits));
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

// Output row `yy` of the horizontal pass from input row `y`.
template <int C>
void horizontal_row(const uint8_t* in, uint8_t* out, int out_width, const Coefficients& c) {
  for (int xx = 0; xx < out_width; ++xx) {
    const int32_t* k = &c.weights[static_cast<size_t>(xx) * c.ksize];
    const uint8_t* p = in + static_cast<size_t>(c.first[xx]) * C;
    int ss[C];
    for (int ch = 0; ch < C; ++ch) ss[ch] = 1 << (kPrecisionBits - 1);
    for (int x = 0; x < c.count[xx]; ++x)
      for (int ch = 0; ch < C; ++ch) ss[ch] += p[x * C + ch] * k[x];
    for (int ch = 0; ch < C; ++ch) out[xx * C + ch] = clip8(ss[ch]);
  }
}

template <int C>
cv::Mat resample(const cv::Mat& src, int width, int height) {
  const bool need_horizontal = width != src.cols;
  const bool need_vertical = height != src.rows;
  Coefficients vert = precompute(src.rows, height);
  const int ybox_first = vert.first[0];
  const int ybox_last = vert.first[height - 1] + vert.count[height - 1];

  cv::Mat temp = src;
  if (need_horizontal) {
    Coefficients horiz = precompute(src.cols, width);
    // Only the input rows the vertical pass will read; its bounds shift to match.
    for (int& f : vert.first) f -= ybox_first;
    temp.create(ybox_last - ybox_first, width, src.type());
    cv::parallel_for_(cv::Range(0, temp.rows), [&](const cv::Range& rows) {
      for (int y = rows.start; y < rows.end; ++y) horizontal_row<C>(src.ptr<uint8_t>(y + ybox_first), temp.ptr<uint8_t>(y), width, horiz);
    });
  }
  if (!need_vertical) return need_horizontal ? temp : src.clone();

  cv::Mat out(height, temp.cols, src.type());
  const int row_values = temp.cols * C;
  cv::parallel_for_(cv::Range(0, height), [&](const cv::Range& rows) {
    std::vector<int> ss(static_cast<size_t>(row_values));
    for (int yy = rows.start; yy < rows.end; ++yy) {
      const int32_t* k = &vert.weights[static_cast<size_t>(yy) * vert.ksize];
      std::fill(ss.begin(), ss.end(), 1 << (kPrecisionBits - 1));
      for (int y = 0; y < vert.count[yy]; ++y) {
        const uint8_t* in = temp.ptr<uint8_t>(vert.first[yy] + y);
        const int32_t w = k[y];
        for (int i = 0; i < row_values; ++i) ss[i] += in[i] * w;
      }
      uint8_t* o = out.ptr<uint8_t>(yy);
      for (int i = 0; i < row_values; ++i) o[i] = clip8(ss[i]);
    }
  });
  return out;
}
}  // namespace

cv::Mat lanczos_resize(const cv::Mat& src, int width, int height) {
  XLTUNE_CHECK(width > 0 && height > 0 && !src.empty(), "lanczos_resize: bad size ", src.cols, "x", src.rows, " -> ",
               width, "x", height);
  XLTUNE_CHECK(src.depth() == CV_8U, "lanczos_resize: expected 8-bit samples, got OpenCV depth ", src.depth());
  if (src.channels() == 1) return resample<1>(src, width, height);
  if (src.channels() == 3) return resample<3>(src, width, height);
  XLTUNE_FAIL("lanczos_resize: expected 1 or 3 channels, got ", src.channels());
}

}  // namespace xltune
