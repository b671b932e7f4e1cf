// PNG files that carry text chunks: generation writes each image with its recipe under the
// keyword "parameters", as AUTOMATIC1111 does, so that A1111's "PNG Info", ComfyUI and
// Pillow's Image.info read it back.
//
// The image is encoded by OpenCV; the chunks are inserted after IHDR (PNG allows tEXt/iTXt
// anywhere between IHDR and IEND). ASCII text goes into tEXt; anything else into an
// uncompressed iTXt (UTF-8), as Pillow's PngInfo.add_text chooses for text Latin-1 cannot hold.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <opencv2/core/mat.hpp>

namespace xltune {

// The PNG bytes of `rgb` (CV_8UC3, R, G, B order) with `texts` (keyword, text) chunks.
std::string encode_png_with_text(const cv::Mat& rgb, const std::vector<std::pair<std::string, std::string>>& texts);
// Writes it atomically to `path`; Error naming the path on failure.
void write_png_with_text(const std::string& path, const cv::Mat& rgb,
                         const std::vector<std::pair<std::string, std::string>>& texts);
// The text chunks of PNG bytes (tEXt and uncompressed iTXt), in file order; Error on a file
// that is not a PNG.
std::vector<std::pair<std::string, std::string>> read_png_text(const std::string& bytes, const std::string& name);

}  // namespace xltune
