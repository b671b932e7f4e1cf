#include "data/image_header.h"

#include "core/check.h"
#include "core/strings.h"
#include "data/byte_order.h"
#include "data/tiff_ifd.h"

namespace xltune {

namespace {
using bytes::be16;
using bytes::be32;
using bytes::le16;
using bytes::le24;
using bytes::le32;

// JPEG markers C0..CF are frame headers (SOFn), except DHT (C4), JPG (C8) and DAC (CC).
bool is_sof(uint8_t m) { return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC; }
// Markers without a length field: SOI, TEM, RST0..7.
bool is_standalone(uint8_t m) { return m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7); }

// Walks the JPEG marker segments from SOI. Stops at (and returns the offset just past) the
// first segment for which stop(marker) holds; throws for a malformed or short file.
template <typename Stop>
size_t walk_jpeg(std::string_view b, const std::string& name, Stop stop, uint8_t* found) {
  size_t pos = 2;
  for (;;) {
    XLTUNE_CHECK(pos < b.size(), "image ", name, ": JPEG ends before its frame header (truncated file)");
    XLTUNE_CHECK(static_cast<uint8_t>(b[pos]) == 0xFF, "image ", name, ": JPEG has no marker at byte ", pos,
                 " (corrupt header)");
    while (pos < b.size() && static_cast<uint8_t>(b[pos]) == 0xFF) ++pos;  // fill bytes
    XLTUNE_CHECK(pos < b.size(), "image ", name, ": JPEG ends inside a marker (truncated file)");
    auto marker = static_cast<uint8_t>(b[pos++]);
    if (is_standalone(marker)) continue;
    XLTUNE_CHECK(marker != 0xD9, "image ", name, ": JPEG ends (EOI) before any frame header");
    XLTUNE_CHECK(pos + 2 <= b.size(), "image ", name, ": JPEG ends inside a segment length (truncated file)");
    uint32_t length = be16(b, pos);
    XLTUNE_CHECK(length >= 2 && pos + length <= b.size(), "image ", name, ": JPEG segment 0xFF",
                 std::hex, static_cast<int>(marker), std::dec, " of ", length, " bytes runs past the end of the file");
    if (stop(marker)) {
      *found = marker;
      return pos;
    }
    pos += length;
  }
}

ImageHeader jpeg_header(std::string_view b, const std::string& name) {
  uint8_t marker = 0;
  size_t at = walk_jpeg(b, name, [](uint8_t m) { return is_sof(m) || m == 0xDA; }, &marker);
  XLTUNE_CHECK(marker != 0xDA, "image ", name, ": JPEG has a scan before any frame header (corrupt)");
  XLTUNE_CHECK(be16(b, at) >= 8, "image ", name, ": JPEG frame header too short");
  ImageHeader h{ImageFormat::kJpeg, be16(b, at + 5), be16(b, at + 3)};
  // Height 0 means "given later by a DNL marker", which OpenCV's libjpeg path does not support.
  XLTUNE_CHECK(h.height > 0 && h.width > 0, "image ", name, ": JPEG frame header gives size ", h.width, "x", h.height);
  return h;
}

ImageHeader png_header(std::string_view b, const std::string& name) {
  XLTUNE_CHECK(b.size() >= 24 && b.substr(12, 4) == "IHDR", "image ", name,
               ": PNG does not start with an IHDR chunk (truncated or corrupt)");
  return {ImageFormat::kPng, be32(b, 16), be32(b, 20)};
}

ImageHeader webp_header(std::string_view b, const std::string& name) {
  XLTUNE_CHECK(b.size() >= 30, "image ", name, ": WebP file too short for its header (", b.size(), " bytes)");
  std::string_view chunk = b.substr(12, 4);
  const size_t d = 20;  // chunk data
  if (chunk == "VP8 ") {
    XLTUNE_CHECK(be16(b, d + 3) == 0x9D01 && static_cast<uint8_t>(b[d + 5]) == 0x2A, "image ", name,
                 ": WebP VP8 frame has no start code (corrupt)");
    return {ImageFormat::kWebp, le16(b, d + 6) & 0x3FFF, le16(b, d + 8) & 0x3FFF};
  }
  if (chunk == "VP8L") {
    XLTUNE_CHECK(static_cast<uint8_t>(b[d]) == 0x2F, "image ", name, ": WebP lossless signature missing (corrupt)");
    uint32_t bits = le32(b, d + 1);
    return {ImageFormat::kWebp, (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1};
  }
  if (chunk == "VP8X") return {ImageFormat::kWebp, le24(b, d + 4) + 1, le24(b, d + 7) + 1};
  XLTUNE_FAIL("image ", name, ": WebP has an unknown first chunk '", chunk, "'");
}

ImageHeader bmp_header(std::string_view b, const std::string& name) {
  XLTUNE_CHECK(b.size() >= 26, "image ", name, ": BMP too short for its header (", b.size(), " bytes)");
  uint32_t dib = le32(b, 14);
  if (dib == 12) return {ImageFormat::kBmp, le16(b, 18), le16(b, 20)};
  XLTUNE_CHECK(dib >= 40 && b.size() >= 26, "image ", name, ": BMP has an unknown header size ", dib);
  auto width = static_cast<int32_t>(le32(b, 18));
  auto height = static_cast<int32_t>(le32(b, 22));  // negative: rows stored top-down
  return {ImageFormat::kBmp, width, height < 0 ? -static_cast<int64_t>(height) : height};
}

ImageHeader tiff_header(std::string_view b, const std::string& name) {
  auto width = tiff_ifd0_tag(b, kTiffImageWidth);
  auto height = tiff_ifd0_tag(b, kTiffImageLength);
  XLTUNE_CHECK(width && height, "image ", name, ": TIFF has no readable width and height in its first directory");
  return {ImageFormat::kTiff, *width, *height};
}
}  // namespace

const char* image_format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::kJpeg: return "JPEG";
    case ImageFormat::kPng: return "PNG";
    case ImageFormat::kWebp: return "WebP";
    case ImageFormat::kBmp: return "BMP";
    case ImageFormat::kTiff: return "TIFF";
    case ImageFormat::kGif: return "GIF";
    case ImageFormat::kHeif: return "HEIC/HEIF/AVIF";
    case ImageFormat::kUnknown: break;
  }
  return "unknown";
}

bool is_decodable(ImageFormat format) {
  return format == ImageFormat::kJpeg || format == ImageFormat::kPng || format == ImageFormat::kWebp ||
         format == ImageFormat::kBmp || format == ImageFormat::kTiff;
}

ImageFormat sniff_image_format(std::string_view b) {
  if (starts_with(b, "\xFF\xD8\xFF")) return ImageFormat::kJpeg;
  if (starts_with(b, "\x89PNG\r\n\x1A\n")) return ImageFormat::kPng;
  if (starts_with(b, "RIFF") && b.size() >= 12 && b.substr(8, 4) == "WEBP") return ImageFormat::kWebp;
  if (starts_with(b, std::string_view("II*\0", 4)) || starts_with(b, std::string_view("MM\0*", 4))) return ImageFormat::kTiff;
  // "BM" alone is too weak (any text starting "BM"); require a known DIB header size too.
  if (starts_with(b, "BM") && b.size() >= 18) {
    uint32_t dib = le32(b, 14);
    if (dib == 12 || dib == 40 || dib == 52 || dib == 56 || dib == 64 || dib == 108 || dib == 124) return ImageFormat::kBmp;
  }
  if (starts_with(b, "GIF87a") || starts_with(b, "GIF89a")) return ImageFormat::kGif;
  if (b.size() >= 12 && b.substr(4, 4) == "ftyp") {
    std::string_view brand = b.substr(8, 4);
    for (std::string_view h : {"heic", "heix", "hevc", "hevx", "heim", "heis", "mif1", "msf1", "avif", "avis"})
      if (brand == h) return ImageFormat::kHeif;
  }
  return ImageFormat::kUnknown;
}

ImageHeader read_image_header(std::string_view bytes, const std::string& name) {
  ImageFormat format = sniff_image_format(bytes.substr(0, kSniffBytes));
  ImageHeader h;
  switch (format) {
    case ImageFormat::kJpeg: h = jpeg_header(bytes, name); break;
    case ImageFormat::kPng: h = png_header(bytes, name); break;
    case ImageFormat::kWebp: h = webp_header(bytes, name); break;
    case ImageFormat::kBmp: h = bmp_header(bytes, name); break;
    case ImageFormat::kTiff: h = tiff_header(bytes, name); break;
    default: XLTUNE_FAIL("image ", name, ": ", image_format_name(format), " is not a format xltune decodes");
  }
  XLTUNE_CHECK(h.width > 0 && h.height > 0, "image ", name, ": ", image_format_name(format), " header gives size ",
               h.width, "x", h.height);
  return h;
}

bool jpeg_is_truncated(std::string_view bytes) {
  uint8_t marker = 0;
  size_t at = 0;
  try {
    at = walk_jpeg(bytes, "", [](uint8_t m) { return m == 0xDA; }, &marker);
  } catch (const Error&) {
    return true;
  }
  return bytes.find("\xFF\xD9", at) == std::string_view::npos;
}

}  // namespace xltune
