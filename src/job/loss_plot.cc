#include "job/loss_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <opencv2/imgproc.hpp>

#include "core/atomic_file.h"
#include "core/check.h"
#include "data/image_codec.h"

namespace xltune {

std::vector<double> moving_average(const std::vector<double>& v, size_t window) {
  std::vector<double> out(v.size());
  double sum = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    sum += v[i];
    if (i >= window) sum -= v[i - window];
    out[i] = sum / static_cast<double>(std::min(i + 1, window));
  }
  return out;
}

namespace {
std::string tick_text(double v) {
  char buf[32];
  if (v != 0 && (std::fabs(v) < 1e-3 || std::fabs(v) >= 1e4)) std::snprintf(buf, sizeof buf, "%.1e", v);
  else std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}
}  // namespace

void write_loss_plot(const std::string& path, const std::vector<double>& losses, const std::string& title,
                     const std::vector<std::pair<int64_t, double>>& validation) {
  XLTUNE_CHECK(!losses.empty(), "loss plot: no steps");
  const int W = 900, H = 520, left = 90, right = 30, top = 50, bottom = 70;
  cv::Mat img(H, W, CV_8UC3, cv::Scalar(255, 255, 255));
  const std::vector<double> avg = moving_average(losses, std::clamp<size_t>(losses.size() / 10, 2, 50));
  double lo = *std::min_element(losses.begin(), losses.end()), hi = *std::max_element(losses.begin(), losses.end());
  for (const auto& [step, v] : validation) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!(hi > lo)) hi = lo + (lo == 0 ? 1 : std::fabs(lo) * 0.1), lo -= (hi - lo) * 0.1;
  const double pad = (hi - lo) * 0.05;
  lo -= pad, hi += pad;
  const int n = static_cast<int>(losses.size());
  auto px = [&](int i) { return left + (n == 1 ? 0 : static_cast<int>(std::lround((W - left - right) * double(i) / (n - 1)))); };
  auto py = [&](double v) { return top + static_cast<int>(std::lround((H - top - bottom) * (hi - v) / (hi - lo))); };
  const cv::Scalar axis(40, 40, 40), grid(225, 225, 225), raw(230, 180, 140), smooth(150, 60, 20),
      held(30, 120, 230);  // BGR: light blue, dark blue, orange
  const int font = cv::FONT_HERSHEY_SIMPLEX;
  for (int k = 0; k <= 5; ++k) {
    const double v = lo + (hi - lo) * k / 5.0;
    const int y = py(v);
    cv::line(img, {left, y}, {W - right, y}, grid, 1);
    cv::putText(img, tick_text(v), {8, y + 5}, font, 0.45, axis, 1, cv::LINE_AA);
  }
  for (int k = 0; k <= 5; ++k) {
    const int i = (n - 1) * k / 5;
    const int x = px(i);
    cv::line(img, {x, H - bottom}, {x, H - bottom + 6}, axis, 1);
    cv::putText(img, std::to_string(i + 1), {x - 10, H - bottom + 24}, font, 0.45, axis, 1, cv::LINE_AA);
  }
  for (int i = 1; i < n; ++i) cv::line(img, {px(i - 1), py(losses[i - 1])}, {px(i), py(losses[i])}, raw, 1, cv::LINE_AA);
  for (int i = 1; i < n; ++i) cv::line(img, {px(i - 1), py(avg[i - 1])}, {px(i), py(avg[i])}, smooth, 2, cv::LINE_AA);
  if (n == 1) cv::circle(img, {px(0), py(losses[0])}, 3, smooth, -1);
  // The validation loss at its steps (a step's x is that of losses[step - 1]).
  const auto vpoint = [&](const std::pair<int64_t, double>& p) {
    return cv::Point(px(static_cast<int>(std::clamp<int64_t>(p.first - 1, 0, n - 1))), py(p.second));
  };
  for (size_t k = 0; k < validation.size(); ++k) {
    if (k > 0) cv::line(img, vpoint(validation[k - 1]), vpoint(validation[k]), held, 2, cv::LINE_AA);
    cv::circle(img, vpoint(validation[k]), 4, held, -1, cv::LINE_AA);
  }
  cv::rectangle(img, {left, top}, {W - right, H - bottom}, axis, 1);
  cv::putText(img, "step", {W / 2 - 20, H - 20}, font, 0.6, axis, 1, cv::LINE_AA);
  cv::putText(img, "loss", {8, top - 15}, font, 0.6, axis, 1, cv::LINE_AA);
  cv::putText(img, title, {left, 30}, font, 0.6, axis, 1, cv::LINE_AA);
  // Legend: a short line of each style beside its name.
  const int lx = W - right - 300, ly = top + 18;
  cv::line(img, {lx, ly - 4}, {lx + 24, ly - 4}, raw, 1, cv::LINE_AA);
  cv::putText(img, "per step", {lx + 30, ly}, font, 0.45, axis, 1, cv::LINE_AA);
  cv::line(img, {lx + 120, ly - 4}, {lx + 144, ly - 4}, smooth, 2, cv::LINE_AA);
  cv::putText(img, "moving average", {lx + 150, ly}, font, 0.45, axis, 1, cv::LINE_AA);
  if (!validation.empty()) {
    cv::line(img, {lx, ly + 14}, {lx + 24, ly + 14}, held, 2, cv::LINE_AA);
    cv::circle(img, {lx + 12, ly + 14}, 4, held, -1, cv::LINE_AA);
    cv::putText(img, "validation loss", {lx + 30, ly + 18}, font, 0.45, axis, 1, cv::LINE_AA);
  }
  write_file_atomic(path, encode_png(img, ChannelOrder::kBgr));
}

}  // namespace xltune
