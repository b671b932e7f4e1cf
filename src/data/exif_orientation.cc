#include "data/exif_orientation.h"

#include <cstdint>

#include "data/byte_order.h"
#include "data/tiff_ifd.h"

namespace xltune {

namespace {
using bytes::be16;
using bytes::be32;
using bytes::le32;

constexpr std::string_view kExifPrefix{"Exif\0\0", 6};

std::string_view strip_exif_prefix(std::string_view block) {
  return block.substr(0, 6) == kExifPrefix ? block.substr(6) : block;
}

// APP1 segments before the first scan.
std::string_view jpeg_exif(std::string_view b) {
  size_t pos = 2;
  while (pos + 4 <= b.size()) {
    if (static_cast<uint8_t>(b[pos]) != 0xFF) return {};
    auto marker = static_cast<uint8_t>(b[pos + 1]);
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
      pos += 2;
      continue;
    }
    if (marker == 0xDA || marker == 0xD9) return {};
    uint32_t length = be16(b, pos + 2);
    if (length < 2 || pos + 2 + length > b.size()) return {};
    std::string_view data = b.substr(pos + 4, length - 2);
    if (marker == 0xE1 && data.substr(0, 6) == kExifPrefix) return data.substr(6);
    pos += 2 + length;
  }
  return {};
}

// The eXIf chunk, wherever it is (the PNG spec wants it before IDAT; not every writer obeys).
std::string_view png_exif(std::string_view b) {
  size_t pos = 8;
  while (pos + 12 <= b.size()) {
    uint32_t length = be32(b, pos);
    if (length > b.size() - pos - 12) return {};
    std::string_view type = b.substr(pos + 4, 4);
    if (type == "eXIf") return strip_exif_prefix(b.substr(pos + 8, length));
    if (type == "IEND") return {};
    pos += 12 + length;
  }
  return {};
}

// RIFF chunks after "RIFF<size>WEBP"; chunk data is padded to an even length.
std::string_view webp_exif(std::string_view b) {
  size_t pos = 12;
  while (pos + 8 <= b.size()) {
    uint32_t length = le32(b, pos + 4);
    if (length > b.size() - pos - 8) return {};
    if (b.substr(pos, 4) == "EXIF") return strip_exif_prefix(b.substr(pos + 8, length));
    pos += 8 + length + (length & 1);
  }
  return {};
}
}  // namespace

int exif_orientation(std::string_view bytes, ImageFormat format) {
  std::string_view exif;
  if (format == ImageFormat::kJpeg) exif = jpeg_exif(bytes);
  else if (format == ImageFormat::kPng) exif = png_exif(bytes);
  else if (format == ImageFormat::kWebp) exif = webp_exif(bytes);
  else if (format == ImageFormat::kTiff) exif = bytes;  // a TIFF file is itself the tag block
  if (exif.empty()) return 1;
  auto value = tiff_ifd0_tag(exif, kTiffOrientation);
  if (!value || *value < 1 || *value > 8) return 1;
  return static_cast<int>(*value);
}

}  // namespace xltune
