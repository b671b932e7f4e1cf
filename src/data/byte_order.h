// Unsigned integers read from a byte string at an offset, big- or little-endian, as image
// headers store them. Callers check bounds first: these read exactly 2, 3 or 4 bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace xltune::bytes {

inline uint32_t at8(std::string_view b, size_t at) { return static_cast<uint8_t>(b[at]); }
inline uint32_t be16(std::string_view b, size_t at) { return at8(b, at) << 8 | at8(b, at + 1); }
inline uint32_t be32(std::string_view b, size_t at) { return be16(b, at) << 16 | be16(b, at + 2); }
inline uint32_t le16(std::string_view b, size_t at) { return at8(b, at) | at8(b, at + 1) << 8; }
inline uint32_t le24(std::string_view b, size_t at) { return le16(b, at) | at8(b, at + 2) << 16; }
inline uint32_t le32(std::string_view b, size_t at) { return le16(b, at) | le16(b, at + 2) << 16; }

}  // namespace xltune::bytes
