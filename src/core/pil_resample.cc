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

}  // namespace

std::vector<uint8_t> pil_resize(const uint8_t* src, int width, int height, int C, int out_width, int out_height,
                                PilFilter f) {
  XLTUNE_CHECK(width > 0 && height > 0 && out_width > 0 && out_height > 0, "resize: bad size ", width, "x", height,
               " -> ", out_width, "x", out_height);
  XLTUNE_CHECK(C >= 1 && C <= 4, "resize: expected 1 to 4 channels, got ", C);
  const bool need_horizontal = out_width != width;
  const bool need_vertical = out_height != height;
  Coefficients vert = precompute(height, out_height, f);
  const int ybox_first = vert.first[0];
  const int ybox_last = vert.first[out_height - 1] + vert.count[out_height - 1];

  std::vector<uint8_t> temp;
  const uint8_t* rows = src;
  int rows_width = width;
  if (need_horizontal) {
    Coefficients horiz = precompute(width, out_width, f);
    // Only the input rows the vertical pass will read; its bounds shift to match.
    for (int& first : vert.first) first -= ybox_first;
    const int temp_rows = need_vertical ? ybox_last - ybox_first : height;
    const int offset = need_vertical ? ybox_first : 0;
    temp.assign(static_cast<size_t>(temp_rows) * out_width * C, 0);
    at::parallel_for(0, temp_rows, 1, [&](int64_t begin, int64_t end) {
      for (int64_t y = begin; y < end; ++y) {
        const uint8_t* in = src + static_cast<size_t>(y + offset) * width * C;
        uint8_t* out = temp.data() + static_cast<size_t>(y) * out_width * C;
        for (int xx = 0; xx < out_width; ++xx) {
          const int32_t* k = &horiz.weights[static_cast<size_t>(xx) * horiz.ksize];
          const uint8_t* p = in + static_cast<size_t>(horiz.first[xx]) * C;
          int ss[4];
          for (int ch = 0; ch < C; ++ch) ss[ch] = 1 << (kPrecisionBits - 1);
          for (int x = 0; x < horiz.count[xx]; ++x)
            for (int ch = 0; ch < C; ++ch) ss[ch] += p[x * C + ch] * k[x];
          for (int ch = 0; ch < C; ++ch) out[xx * C + ch] = clip8(ss[ch]);
        }
      }
    });
    rows = temp.data();
    rows_width = out_width;
  }
  if (!need_vertical) {
    if (need_horizontal) return temp;
    return std::vector<uint8_t>(src, src + static_cast<size_t>(width) * height * C);
  }
  const int row_values = rows_width * C;
  std::vector<uint8_t> out(static_cast<size_t>(out_height) * row_values);
  at::parallel_for(0, out_height, 1, [&](int64_t begin, int64_t end) {
    std::vector<int> ss(static_cast<size_t>(row_values));
    for (int64_t yy = begin; yy < end; ++yy) {
      const int32_t* k = &vert.weights[static_cast<size_t>(yy) * vert.ksize];
      std::fill(ss.begin(), ss.end(), 1 << (kPrecisionBits - 1));
      for (int y = 0; y < vert.count[yy]; ++y) {
        const uint8_t* in = rows + static_cast<size_t>(vert.first[yy] + y) * row_values;
        const int32_t w = k[y];
        for (int i = 0; i < row_values; ++i) ss[i] += in[i] * w;
      }
      uint8_t* o = out.data() + static_cast<size_t>(yy) * row_values;
      for (int i = 0; i < row_values; ++i) o[i] = clip8(ss[i]);
    }
  });
  return out;
}

}  // namespace xltune
