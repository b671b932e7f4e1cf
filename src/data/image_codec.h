// Image files to pixels and PNG files from pixels, through the format libraries themselves
// (libjpeg-turbo, libpng, libwebp, libtiff) and data/bmp_decode, not OpenCV's imgcodecs.
// Note [Image codecs] (docs/design-notes.md): Debian's imgcodecs links GDAL, GDCM, OpenEXR,
// HEIF and x265, 150 MB of libraries that no upload needs, and the GPU machine's bundle
// (bench/gpu/pack) carries every library xltune loads.
//
// decode_pixels gives what cv::imdecode(bytes, IMREAD_UNCHANGED) gave before (the tests hold
// the two equal, pixel for pixel, on every kind of file OpenCV writes), except for BMP, read
// as Pillow reads it (data/bmp_decode.h).
#pragma once

#include <string>
#include <string_view>

#include <opencv2/core/mat.hpp>

#include "data/image_header.h"

namespace xltune {

// Pixels as stored, rows top to bottom in file order (no orientation applied): 8 or 16-bit
// samples (32-bit float for a float TIFF); 1 channel (grey), 3 (B, G, R) or 4 (B, G, R, A, not
// premultiplied). Grey with transparency reads as grey, as OpenCV read it. A file the decoder
// rejects, or whose data ends early, is an Error naming `name` and the library's reason.
// `max_pixels` bounds what BMP allocates (the other formats' sizes come checked from
// read_image_header).
cv::Mat decode_pixels(std::string_view bytes, ImageFormat format, const std::string& name, uint64_t max_pixels);

enum class ChannelOrder { kRgb, kBgr };

// 8-bit grey (1 channel), colour (3) or colour with alpha (4), in `order`, to PNG bytes.
// zlib level 6 with PNG's adaptive filters, as Pillow saves.
std::string encode_png(const cv::Mat& image, ChannelOrder order);

}  // namespace xltune
