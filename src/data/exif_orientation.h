// The EXIF orientation tag (1..8) of a JPEG, PNG or WebP file.
//
// OpenCV 4.6 applies it only under IMREAD_COLOR, and only for JPEG and PNG (verified: a WebP
// with orientation 6 comes back unrotated). xltune decodes with IMREAD_UNCHANGED (to keep
// alpha and 16-bit samples), which ignores it for every format, so decode reads the tag here
// and rotates itself: the same result for every format. TIFF is the exception: OpenCV's TIFF
// decoder rotates by its own orientation tag even under IMREAD_UNCHANGED, so it is left alone.
#pragma once

#include <string_view>

#include "data/image_header.h"

namespace xltune {

// 1 (upright) when there is no EXIF block, no orientation tag, or a malformed one.
int exif_orientation(std::string_view bytes, ImageFormat format);

}  // namespace xltune
