// The orientation tag (1..8) of a JPEG, PNG or WebP file's EXIF block, or of a TIFF file's
// first IFD (a TIFF is itself the tag block).
//
// The decoders (data/image_codec.h) return pixels as stored, so decode_image rotates by this
// tag itself: the same result for every format, as PIL's ImageOps.exif_transpose gives.
#pragma once

#include <string_view>

#include "data/image_header.h"

namespace xltune {

// 1 (upright) when there is no EXIF block, no orientation tag, or a malformed one.
int exif_orientation(std::string_view bytes, ImageFormat format);

}  // namespace xltune
