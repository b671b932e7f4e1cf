#include "data/bmp_decode.h"

#include <array>
#include <cstdlib>

#include "core/check.h"

namespace xltune {
namespace {

enum Compression : uint32_t { kRgb = 0, kRle8 = 1, kRle4 = 2, kBitFields = 3, kJpeg = 4, kPng = 5, kAlphaBitFields = 6 };

struct Reader {
  std::string_view b;
  const std::string& name;
  uint32_t u8(size_t at) const { need(at, 1); return static_cast<uint8_t>(b[at]); }
  uint32_t u16(size_t at) const { need(at, 2); return u8(at) | u8(at + 1) << 8; }
  uint32_t u32(size_t at) const { need(at, 4); return u16(at) | u16(at + 2) << 16; }
  void need(size_t at, size_t n) const {
    XLTUNE_CHECK(at <= b.size() && n <= b.size() - at, "image ", name, ": BMP is truncated (", n, " bytes needed at byte ", at, ", the file has ",
                 b.size(), ")");
  }
};

// One channel of a bit-fields pixel: its mask, where it starts, and how many bits it has.
struct Field {
  uint32_t mask = 0;
  int shift = 0;
  uint32_t max = 0;  // the largest value the field holds (0: the field is absent)
  uint8_t scale(uint32_t pixel) const {
    if (max == 0) return 255;  // absent alpha: opaque
    uint64_t v = (pixel & mask) >> shift;
    return static_cast<uint8_t>(max == 255 ? v : (v * 255 + max / 2) / max);
  }
};

Field field(uint32_t mask, const std::string& name) {
  Field f;
  if (mask == 0) return f;
  f.mask = mask;
  while (((mask >> f.shift) & 1u) == 0) ++f.shift;
  uint32_t run = mask >> f.shift;
  XLTUNE_CHECK((run & (run + 1)) == 0, "image ", name, ": BMP bit-field mask 0x", std::hex, mask, " is not one run of bits");
  f.max = run;
  return f;
}

// Palette indices (one byte per pixel, rows bottom to top) from RLE8 or RLE4 data.
std::vector<uint8_t> decode_rle(const Reader& r, size_t at, int width, int height, bool four_bit) {
  std::vector<uint8_t> indices(static_cast<size_t>(width) * height, 0);
  int x = 0, y = 0;
  auto put = [&](uint32_t index) {
    if (x < width && y < height) indices[static_cast<size_t>(y) * width + x] = static_cast<uint8_t>(index);
    ++x;
  };
  while (y < height) {
    XLTUNE_CHECK(at + 2 <= r.b.size(), "image ", r.name, ": BMP's RLE data ends at row ", y, " of ", height, " (truncated)");
    const uint32_t count = r.u8(at), value = r.u8(at + 1);
    at += 2;
    if (count > 0) {  // a run of one index (RLE8) or of two alternating ones (RLE4)
      for (uint32_t i = 0; i < count; ++i) put(four_bit ? (i % 2 == 0 ? value >> 4 : value & 15) : value);
    } else if (value == 0) {  // end of line
      x = 0, ++y;
    } else if (value == 1) {  // end of bitmap
      break;
    } else if (value == 2) {  // delta: skip right and up
      x += static_cast<int>(r.u8(at)), y += static_cast<int>(r.u8(at + 1));
      at += 2;
    } else {  // `value` literal indices, padded to a 16-bit boundary
      const size_t bytes = four_bit ? (value + 1) / 2 : value;
      r.need(at, bytes);
      for (uint32_t i = 0; i < value; ++i) {
        uint32_t byte = r.u8(at + (four_bit ? i / 2 : i));
        put(four_bit ? (i % 2 == 0 ? byte >> 4 : byte & 15) : byte);
      }
      at += bytes + (bytes & 1);
    }
  }
  return indices;
}

// What the file and info headers say, checked.
struct BmpHeader {
  uint32_t data_offset = 0;
  int64_t width = 0, height = 0;
  uint32_t bpp = 0, compression = kRgb, colors_used = 0;
  size_t palette_at = 0, palette_entry = 4;
  std::array<uint32_t, 4> masks{};  // R, G, B, A
  bool top_down = false, rle = false;
};

// The info header's fields: OS/2's 12-byte core header or Windows' 40 to 124 bytes.
void read_info_header(const Reader& r, const std::string& name, BmpHeader& h) {
  const uint32_t header_size = r.u32(14);
  h.palette_at = 14 + header_size;
  if (header_size == 12) {  // OS/2 BITMAPCOREHEADER: 16-bit unsigned sides, 3-byte palette entries
    h.width = r.u16(18), h.height = r.u16(20), h.bpp = r.u16(24);
    h.palette_entry = 3;
    return;
  }
  XLTUNE_CHECK(header_size >= 40 && header_size <= 124, "image ", name, ": BMP header of ", header_size,
               " bytes is not one xltune reads");
  r.need(14, header_size);
  h.width = static_cast<int32_t>(r.u32(18)), h.height = static_cast<int32_t>(r.u32(22));
  h.bpp = r.u16(28), h.compression = r.u32(30), h.colors_used = r.u32(46);
  if (h.compression == kBitFields || h.compression == kAlphaBitFields) {
    // Masks live in the V2+ header, or follow a 40-byte header (3 of them, 4 with alpha).
    const int count = header_size >= 56 || h.compression == kAlphaBitFields ? 4 : 3;
    for (int i = 0; i < count; ++i) h.masks[i] = r.u32(54 + 4 * i);
    if (header_size == 40) h.palette_at += 4 * count;
  }
}

BmpHeader read_header(const Reader& r, std::string_view bytes, const std::string& name, uint64_t max_pixels) {
  XLTUNE_CHECK(bytes.size() >= 2 && bytes.substr(0, 2) == "BM", "image ", name, ": not a BMP file");
  BmpHeader h;
  h.data_offset = r.u32(10);
  read_info_header(r, name, h);
  const uint32_t compression = h.compression, bpp = h.bpp;
  XLTUNE_CHECK(compression != kJpeg && compression != kPng, "image ", name, ": a BMP holding a ",
               compression == kJpeg ? "JPEG" : "PNG", " is not supported");
  XLTUNE_CHECK(compression <= kAlphaBitFields, "image ", name, ": BMP compression ", compression, " is not supported");
  h.top_down = h.height < 0;
  h.height = std::llabs(h.height);
  XLTUNE_CHECK(h.width > 0 && h.height > 0, "image ", name, ": BMP of ", h.width, "x", h.height, " pixels");
  XLTUNE_CHECK(static_cast<uint64_t>(h.width) * static_cast<uint64_t>(h.height) <= max_pixels, "image ", name, ": ",
               h.width, "x", h.height, " is above the limit of ", max_pixels, " pixels");
  h.rle = compression == kRle8 || compression == kRle4;
  const bool bitfields = compression == kBitFields || compression == kAlphaBitFields;
  XLTUNE_CHECK((bpp == 1 || bpp == 4 || bpp == 8 || bpp == 16 || bpp == 24 || bpp == 32) &&
                   (compression != kRle8 || bpp == 8) && (compression != kRle4 || bpp == 4) &&
                   (!bitfields || bpp == 16 || bpp == 32),
               "image ", name, ": BMP of ", bpp, " bits per pixel with compression ", compression, " is not valid");
  XLTUNE_CHECK(!(h.rle && h.top_down), "image ", name, ": an RLE BMP cannot be stored top down");
  return h;
}

// 1, 4 and 8 bits: indices first (packed rows or RLE), then colours. Indices past the palette
// are black.
void decode_palette_image(const Reader& r, const std::string& name, const BmpHeader& hd, BmpPixels& out) {
  const size_t w = out.width, h = out.height, bpp = hd.bpp;
  const uint32_t entries = hd.colors_used != 0 ? hd.colors_used : 1u << bpp;
  XLTUNE_CHECK(entries <= 256, "image ", name, ": BMP palette of ", entries, " colours");
  std::vector<std::array<uint8_t, 3>> palette(256, {0, 0, 0});
  r.need(hd.palette_at, static_cast<size_t>(entries) * hd.palette_entry);
  for (uint32_t i = 0; i < entries; ++i)
    for (int c = 0; c < 3; ++c) palette[i][c] = static_cast<uint8_t>(r.u8(hd.palette_at + i * hd.palette_entry + c));
  std::vector<uint8_t> indices;  // rows as stored: bottom to top unless top_down
  if (hd.rle) {
    indices = decode_rle(r, hd.data_offset, out.width, out.height, hd.compression == kRle4);
  } else {
    const size_t stride = (w * bpp + 31) / 32 * 4;
    r.need(hd.data_offset, stride * h);
    indices.resize(w * h);
    for (size_t y = 0; y < h; ++y)
      for (size_t x = 0; x < w; ++x) {
        const size_t bit = x * bpp;
        const uint32_t byte = r.u8(hd.data_offset + y * stride + bit / 8);
        indices[y * w + x] = static_cast<uint8_t>((byte >> (8 - bpp - bit % 8)) & ((1u << bpp) - 1));
      }
  }
  out.pixels.resize(w * h * 3);
  for (size_t y = 0; y < h; ++y) {
    const size_t stored = hd.top_down ? y : h - 1 - y;
    for (size_t x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) out.pixels[(y * w + x) * 3 + c] = palette[indices[stored * w + x]][c];
  }
}

// 16, 24 and 32 bits: direct colour. Bit fields (or 16-bit's 5-5-5 default) per pixel.
void decode_direct_colour(const Reader& r, std::string_view bytes, const std::string& name, BmpHeader hd,
                          BmpPixels& out) {
  const size_t w = out.width, h = out.height, bpp = hd.bpp;
  const bool fields = hd.compression == kBitFields || hd.compression == kAlphaBitFields || bpp == 16;
  if (bpp == 16 && hd.compression == kRgb) hd.masks = {0x7C00, 0x03E0, 0x001F, 0};
  const Field red = field(hd.masks[0], name), green = field(hd.masks[1], name), blue = field(hd.masks[2], name),
              alpha = field(hd.masks[3], name);
  out.channels = fields && alpha.max != 0 ? 4 : 3;
  const size_t bytes_per_pixel = bpp / 8, stride = (w * bpp + 31) / 32 * 4, cn = out.channels;
  r.need(hd.data_offset, stride * h);
  out.pixels.resize(w * h * cn);
  for (size_t y = 0; y < h; ++y) {
    const size_t row = hd.data_offset + (hd.top_down ? y : h - 1 - y) * stride;
    uint8_t* dst = out.pixels.data() + y * w * cn;
    for (size_t x = 0; x < w; ++x, dst += cn) {
      const size_t at = row + x * bytes_per_pixel;
      if (!fields) {  // 24-bit BGR, or 32-bit BGR plus a padding byte
        for (int c = 0; c < 3; ++c) dst[c] = static_cast<uint8_t>(bytes[at + c]);
        continue;
      }
      const uint32_t p = bpp == 16 ? r.u16(at) : r.u32(at);
      dst[0] = blue.scale(p), dst[1] = green.scale(p), dst[2] = red.scale(p);
      if (cn == 4) dst[3] = alpha.scale(p);
    }
  }
}

}  // namespace

BmpPixels decode_bmp(std::string_view bytes, const std::string& name, uint64_t max_pixels) {
  const Reader r{bytes, name};
  const BmpHeader header = read_header(r, bytes, name, max_pixels);
  BmpPixels out;
  out.width = static_cast<int>(header.width), out.height = static_cast<int>(header.height);
  if (header.bpp <= 8) decode_palette_image(r, name, header, out);
  else decode_direct_colour(r, bytes, name, header, out);
  return out;
}

}  // namespace xltune
