#include "data/contact_sheet.h"

#include <opencv2/imgproc.hpp>

#include "core/atomic_file.h"
#include "core/check.h"
#include "data/image_codec.h"
#include "data/lanczos_resize.h"

namespace xltune {

namespace {
constexpr int kColumns = 3;
constexpr int kGap = 8;
constexpr int kTextLines = 4;
constexpr int kLineHeight = 16;
constexpr double kFontScale = 0.42;
const cv::Scalar kInk(20, 20, 20), kPaper(255, 255, 255), kFrame(150, 150, 150);

// Hershey fonts have ASCII only: other bytes become '?', one per UTF-8 character.
std::string ascii(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c >= 0x20 && c < 0x7F) out += static_cast<char>(c);
    else if (c >= 0xC0 || c < 0x80) out += '?';  // a lead byte or a control character
  }
  return out;
}

// Greedy word wrap to `width` pixels; the last line ends in "..." when text is left over.
std::vector<std::string> wrap(const std::string& text, int width, int max_lines) {
  std::vector<std::string> lines;
  std::string line, word;
  auto fits = [&](const std::string& s) {
    int baseline = 0;
    return cv::getTextSize(s, cv::FONT_HERSHEY_SIMPLEX, kFontScale, 1, &baseline).width <= width;
  };
  std::string rest = ascii(text) + " ";
  for (char c : rest) {
    if (c != ' ') {
      word += c;
      continue;
    }
    std::string candidate = line.empty() ? word : line + " " + word;
    if (fits(candidate) || line.empty()) {
      line = candidate;
    } else {
      lines.push_back(line);
      line = word;
    }
    word.clear();
  }
  if (!line.empty()) lines.push_back(line);
  if (static_cast<int>(lines.size()) > max_lines) {
    lines.resize(static_cast<size_t>(max_lines));
    lines.back() += " ...";
  }
  return lines;
}
}  // namespace

void ContactSheet::add(const cv::Mat& rgb, const cv::Mat& mask, const std::string& name, const std::string& caption) {
  ++total_;
  if (tiles_.size() >= kMaxTiles) return;
  Tile t;
  // Pillow's Lanczos, as the crops themselves are made: what a Pillow thumbnail of the shard shows.
  // Within a kThumb square, keeping the shape (aspect buckets, Note [Aspect buckets]).
  const int w = rgb.cols >= rgb.rows ? kThumb : std::max(1, (kThumb * rgb.cols + rgb.rows / 2) / rgb.rows);
  const int h = rgb.rows >= rgb.cols ? kThumb : std::max(1, (kThumb * rgb.rows + rgb.cols / 2) / rgb.cols);
  t.rgb = lanczos_resize(rgb, w, h);
  t.mask = lanczos_resize(mask, w, h);
  t.name = name;
  t.caption = caption;
  tiles_.push_back(std::move(t));
}

cv::Mat ContactSheet::render() const {
  const int tile_w = 2 * kThumb + kGap, tile_h = kThumb + (kTextLines + 1) * kLineHeight + kGap;
  const int n = static_cast<int>(tiles_.size()) + (total_ > tiles_.size() ? 1 : 0);
  const int columns = std::max(1, std::min(kColumns, n));
  const int rows = std::max(1, (n + columns - 1) / columns);
  cv::Mat sheet(kGap + rows * (tile_h + kGap), kGap + columns * (tile_w + kGap), CV_8UC3, kPaper);
  for (size_t i = 0; i < tiles_.size(); ++i) {
    const Tile& t = tiles_[i];
    const int x = kGap + static_cast<int>(i % columns) * (tile_w + kGap);
    const int y = kGap + static_cast<int>(i / columns) * (tile_h + kGap);
    const int w = t.rgb.cols, h = t.rgb.rows;
    t.rgb.copyTo(sheet(cv::Rect(x, y, w, h)));
    cv::Mat mask_rgb;
    cv::cvtColor(t.mask, mask_rgb, cv::COLOR_GRAY2RGB);
    mask_rgb.copyTo(sheet(cv::Rect(x + kThumb + kGap, y, w, h)));
    // Framed, so that an all-white (uniform) mask is visible as such.
    cv::rectangle(sheet, cv::Rect(x - 1, y - 1, w + 2, h + 2), kFrame);
    cv::rectangle(sheet, cv::Rect(x + kThumb + kGap - 1, y - 1, w + 2, h + 2), kFrame);
    int line_y = y + kThumb + kLineHeight;
    for (const auto& line : wrap(t.name, tile_w, 1)) {
      cv::putText(sheet, line, {x, line_y}, cv::FONT_HERSHEY_SIMPLEX, kFontScale, kInk, 1, cv::LINE_AA);
      line_y += kLineHeight;
    }
    for (const auto& line : wrap("\"" + t.caption + "\"", tile_w, kTextLines)) {
      cv::putText(sheet, line, {x, line_y}, cv::FONT_HERSHEY_SIMPLEX, kFontScale, kInk, 1, cv::LINE_AA);
      line_y += kLineHeight;
    }
  }
  if (total_ > tiles_.size()) {
    const int i = static_cast<int>(tiles_.size());
    const int x = kGap + (i % columns) * (tile_w + kGap), y = kGap + (i / columns) * (tile_h + kGap);
    cv::putText(sheet, "+ " + std::to_string(total_ - tiles_.size()) + " more", {x + 10, y + kThumb / 2},
                cv::FONT_HERSHEY_SIMPLEX, 0.8, kInk, 1, cv::LINE_AA);
  }
  return sheet;
}

void ContactSheet::write(const std::string& path) const {
  write_file_atomic(path, encode_png(render(), ChannelOrder::kRgb));
}

}  // namespace xltune
