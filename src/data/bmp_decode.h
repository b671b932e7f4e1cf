// BMP files to 8-bit BGR or BGRA pixels, written here rather than taken from a library: no
// small library decodes BMP, and OpenCV's imgcodecs brings 150 MB of other codecs' libraries
// with it (Note [Image codecs] in docs/design-notes.md). Pure C++ on bytes, so the fuzzer runs
// it without OpenCV.
//
// Reads what Windows and Pillow write: the OS/2 core header and BITMAPINFOHEADER up to V5;
// 1, 4 and 8-bit palettes (RLE8 and RLE4 too), 16-bit (5-5-5, or bit fields), 24-bit, and
// 32-bit. Pixels follow Pillow's reading, the reference trainer's: a 32-bit BI_RGB pixel's
// fourth byte is padding (many writers leave it 0), and only bit fields with an alpha mask
// give an alpha channel. Anything else (JPEG or PNG inside a BMP, bad sizes, data that runs
// out) is an Error naming the image.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace xltune {

struct BmpPixels {
  int width = 0, height = 0;
  int channels = 3;             // 3: B, G, R; 4: B, G, R, A (not premultiplied)
  std::vector<uint8_t> pixels;  // rows top to bottom, width * channels bytes each, no padding
};

// `max_pixels` is checked against the header before anything is allocated.
BmpPixels decode_bmp(std::string_view bytes, const std::string& name, uint64_t max_pixels);

}  // namespace xltune
