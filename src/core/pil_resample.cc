#include "core/pil_resample.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "core/check.h"

namespace xltune {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return std::sin(x) / x;
}

// Pillow's filters and their supports.
double filter_value(PilFilter f, double x) {
  switch (f) {
    case PilFilter::kBilinear:
      if (x < 0.0) x = -x;
      return x < 1.0 ? 1.0 - x : 0.0;
    case PilFilter::kBicubic: {
      const double a = -0.5;
      if (x < 0.0) x = -x;
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    }
    case PilFilter::kLanczos:
      return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0;
  }
  return 0.0;
}
double filter_support(PilFilter f) { return f == PilFilter::kBilinear ? 1.0 : f == PilFilter::kBicubic ? 2.0 : 3.0; }

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

Coefficients precompute(int in_size, int out_size, PilFilter f) {
  Coefficients c;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = filter_support(f) * filterscale;
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
      k[x] = filter_value(f, (x + xmin - center + 0.5) * ss);
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

// One horizontal pass: `rows` rows of the input, from row `offset` on, each `width` pixels of C
// channels, to rows of c.first.size() pixels.
std::vector<uint8_t> horizontal_pass(const uint8_t* src, int width, int offset, int rows, int C,
                                     const Coefficients& c) {
  const int out_width = static_cast<int>(c.first.size());
  std::vector<uint8_t> out(static_cast<size_t>(rows) * out_width * C);
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t y = begin; y < end; ++y) {
      const uint8_t* in = src + static_cast<size_t>(y + offset) * width * C;
      uint8_t* o = out.data() + static_cast<size_t>(y) * out_width * C;
      for (int xx = 0; xx < out_width; ++xx) {
        const int32_t* k = &c.weights[static_cast<size_t>(xx) * c.ksize];
        const uint8_t* p = in + static_cast<size_t>(c.first[xx]) * C;
        int ss[4];
        for (int ch = 0; ch < C; ++ch) ss[ch] = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < c.count[xx]; ++x)
          for (int ch = 0; ch < C; ++ch) ss[ch] += p[x * C + ch] * k[x];
        for (int ch = 0; ch < C; ++ch) o[xx * C + ch] = clip8(ss[ch]);
      }
    }
  });
  return out;
}

// One vertical pass over rows of `row_values` bytes; c.first indexes rows of `src`.
std::vector<uint8_t> vertical_pass(const uint8_t* src, int row_values, const Coefficients& c) {
  const int out_height = static_cast<int>(c.first.size());
  std::vector<uint8_t> out(static_cast<size_t>(out_height) * row_values);
  at::parallel_for(0, out_height, 1, [&](int64_t begin, int64_t end) {
    std::vector<int> ss(static_cast<size_t>(row_values));
    for (int64_t yy = begin; yy < end; ++yy) {
      const int32_t* k = &c.weights[static_cast<size_t>(yy) * c.ksize];
      std::fill(ss.begin(), ss.end(), 1 << (kPrecisionBits - 1));
      for (int y = 0; y < c.count[yy]; ++y) {
        const uint8_t* in = src + static_cast<size_t>(c.first[yy] + y) * row_values;
        const int32_t w = k[y];
        for (int i = 0; i < row_values; ++i) ss[i] += in[i] * w;
      }
      uint8_t* o = out.data() + static_cast<size_t>(yy) * row_values;
      for (int i = 0; i < row_values; ++i) o[i] = clip8(ss[i]);
    }
  });
  return out;
}

}  // namespace

bool pil_resizes_vertically_first(int width, int height, int out_width, int out_height) {
  // Pillow 13's ImagingResampleInner: "If height is being scaled down more than twice the
  // amount the width is, run the vertical pass first". The amounts are pixel differences, not
  // ratios, so a photo narrower than the output (72x100 -> 96x96) counts as "width grows".
  const int dh = height - out_height, dw = width - out_width;
  return dh > 0 && dh > dw * 2;
}

std::vector<uint8_t> pil_resize(const uint8_t* src, int width, int height, int C, int out_width, int out_height,
                                PilFilter f) {
  XLTUNE_CHECK(width > 0 && height > 0 && out_width > 0 && out_height > 0, "resize: bad size ", width, "x", height,
               " -> ", out_width, "x", out_height);
  XLTUNE_CHECK(C >= 1 && C <= 4, "resize: expected 1 to 4 channels, got ", C);
  const bool need_horizontal = out_width != width;
  const bool need_vertical = out_height != height;
  if (!need_horizontal && !need_vertical) return std::vector<uint8_t>(src, src + static_cast<size_t>(width) * height * C);
  if (!need_horizontal) return vertical_pass(src, width * C, precompute(height, out_height, f));
  const Coefficients horiz = precompute(width, out_width, f);
  if (!need_vertical) return horizontal_pass(src, width, 0, height, C, horiz);
  Coefficients vert = precompute(height, out_height, f);
  if (pil_resizes_vertically_first(width, height, out_width, out_height)) {
    const std::vector<uint8_t> temp = vertical_pass(src, width * C, vert);
    return horizontal_pass(temp.data(), width, 0, out_height, C, horiz);
  }
  // Horizontal first, over only the input rows the vertical pass will read; its bounds shift.
  const int ybox_first = vert.first[0];
  const int ybox_last = vert.first[out_height - 1] + vert.count[out_height - 1];
  for (int& first : vert.first) first -= ybox_first;
  const std::vector<uint8_t> temp = horizontal_pass(src, width, ybox_first, ybox_last - ybox_first, C, horiz);
  return vertical_pass(temp.data(), out_width * C, vert);
}

}  // namespace xltune
