// A PNG that shows what preprocessing made, for a person to check before a long training run:
// each crop beside its mask, with the sample's name and caption, three to a row. Crops that are
// not square (aspect buckets) keep their shape within the square thumbnail; preprocessing adds
// the bucket to the name ("img.jpg [1216x832]").
#pragma once

#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

namespace xltune {

class ContactSheet {
 public:
  static constexpr int kThumb = 192;       // side of each thumbnail
  static constexpr size_t kMaxTiles = 60;  // larger sets show the first ones and a count

  // `rgb`: CV_8UC3 RGB, `mask`: CV_8UC1, same size (any).
  void add(const cv::Mat& rgb, const cv::Mat& mask, const std::string& name, const std::string& caption);
  size_t size() const { return total_; }
  // The sheet as an RGB image.
  cv::Mat render() const;
  // render() as a PNG at `path`, written atomically.
  void write(const std::string& path) const;

 private:
  struct Tile {
    cv::Mat rgb, mask;
    std::string name, caption;
  };
  std::vector<Tile> tiles_;
  size_t total_ = 0;
};

}  // namespace xltune
