// Reads one numeric tag from the first image file directory (IFD0) of TIFF-structured bytes:
// a TIFF file, or the EXIF block of a JPEG, PNG or WebP (EXIF is a TIFF structure). Every
// offset is bounds-checked: a hostile file gets "absent", never a read past the end.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace xltune {

// The value of `tag` in IFD0 when it is a SHORT or LONG with one value; nullopt when the tag
// is absent or the structure is malformed.
std::optional<uint32_t> tiff_ifd0_tag(std::string_view tiff, uint16_t tag);

constexpr uint16_t kTiffImageWidth = 256;
constexpr uint16_t kTiffImageLength = 257;
constexpr uint16_t kTiffOrientation = 274;

}  // namespace xltune
