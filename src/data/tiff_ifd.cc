#include "data/tiff_ifd.h"

namespace xltune {

namespace {
// Byte order as the header says: "II" little endian, "MM" big endian.
struct TiffBytes {
  std::string_view bytes;
  bool little = true;

  bool has(uint64_t offset, uint64_t size) const { return offset <= bytes.size() && size <= bytes.size() - offset; }
  uint16_t u16(uint64_t at) const {
    auto b0 = static_cast<uint8_t>(bytes[at]), b1 = static_cast<uint8_t>(bytes[at + 1]);
    return little ? static_cast<uint16_t>(b0 | b1 << 8) : static_cast<uint16_t>(b0 << 8 | b1);
  }
  uint32_t u32(uint64_t at) const {
    uint32_t a = u16(at), b = u16(at + 2);
    return little ? (a | b << 16) : (a << 16 | b);
  }
};
}  // namespace

std::optional<uint32_t> tiff_ifd0_tag(std::string_view tiff, uint16_t tag) {
  if (tiff.size() < 8) return std::nullopt;
  TiffBytes t{tiff};
  if (tiff.substr(0, 2) == "II") {
    t.little = true;
  } else if (tiff.substr(0, 2) == "MM") {
    t.little = false;
  } else {
    return std::nullopt;
  }
  if (t.u16(2) != 42) return std::nullopt;
  uint64_t ifd = t.u32(4);
  if (!t.has(ifd, 2)) return std::nullopt;
  uint16_t count = t.u16(ifd);
  for (uint16_t i = 0; i < count; ++i) {
    uint64_t entry = ifd + 2 + uint64_t{12} * i;
    if (!t.has(entry, 12)) return std::nullopt;
    if (t.u16(entry) != tag) continue;
    uint16_t type = t.u16(entry + 2);
    uint32_t n = t.u32(entry + 4);
    if (n != 1) return std::nullopt;
    if (type == 3) return t.u16(entry + 8);  // SHORT: left-justified in the 4-byte value field
    if (type == 4) return t.u32(entry + 8);  // LONG
    return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace xltune
