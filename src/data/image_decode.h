// One image file to 8-bit RGB pixels, as a person would see it: EXIF orientation applied,
// grey and 16-bit converted, transparency composited on white, CMYK JPEG converted (Adobe's
// inverted CMYK). The pixels come from data/image_codec.h.
//
// Every failure is an Error that names the image; the pipeline turns it into a warning and
// skips the image (one bad photo must not end a run), and fails only when none is left.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <opencv2/core/mat.hpp>

#include "data/image_header.h"

namespace xltune {

struct DecodeLimits {
  // Refused before decoding, from the header: a decoder allocates width*height*channels*depth
  // up front. 128 Mpx (e.g. 13000x10000, above any phone or DSLR) is 384 MB as RGB.
  uint64_t max_image_pixels = uint64_t{1} << 27;
  // Larger files are refused before they are read.
  uint64_t max_file_bytes = uint64_t{1} << 28;
};

struct DecodedImage {
  cv::Mat rgb;  // CV_8UC3, R, G, B order, rows top to bottom as displayed
  ImageFormat format = ImageFormat::kUnknown;
  int orientation = 1;  // EXIF orientation that was applied (1: none)
};

DecodedImage decode_image(std::string_view bytes, const std::string& name, const DecodeLimits& limits = {});
// Reads `path` (never through a symbolic link) and decodes it; `name` is what messages show.
DecodedImage decode_image_file(const std::string& path, const std::string& name, const DecodeLimits& limits = {});

// Rotates/flips an image stored with EXIF orientation 1..8 to upright (as PIL's
// ImageOps.exif_transpose does).
cv::Mat apply_orientation(const cv::Mat& image, int orientation);

// The whole file, opened with O_NOFOLLOW; refuses files above max_bytes before reading them.
std::string read_file_limited(const std::string& path, const std::string& name, uint64_t max_bytes);

}  // namespace xltune
