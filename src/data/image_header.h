// What an image file is, from its bytes: the format from the magic bytes (never from the name)
// and the pixel size from the header, read without decoding a pixel.
//
// Ingest recognises images by content, so a PNG named photo.dat is an image and a text file
// named photo.jpg is not. Decode reads the size here before it lets a decoder allocate anything,
// so a 20000x20000 header in a 200-byte file is refused at the cost of parsing 30 bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace xltune {

enum class ImageFormat {
  kUnknown,
  // Decoded by xltune (data/image_codec.h).
  kJpeg,
  kPng,
  kWebp,
  kBmp,
  kTiff,
  // Recognised so that the warning can say what the file is, but not decoded.
  kGif,
  kHeif,  // HEIC/HEIF/AVIF (ISO base media "ftyp" boxes): iPhone photos
};

const char* image_format_name(ImageFormat format);
bool is_decodable(ImageFormat format);

// The format from the first bytes; kUnknown for anything else. kSniffBytes bytes are enough.
ImageFormat sniff_image_format(std::string_view head);
constexpr size_t kSniffBytes = 32;

struct ImageHeader {
  ImageFormat format = ImageFormat::kUnknown;
  int64_t width = 0;
  int64_t height = 0;
};

// Width and height as stored in the header (before any EXIF rotation). Throws Error naming
// `name` when the header is cut short or malformed, or the format is not decodable.
ImageHeader read_image_header(std::string_view bytes, const std::string& name);

// A JPEG whose entropy-coded data stops before the end-of-image marker. libjpeg decodes such a
// file "successfully" (a warning, and grey fill for the missing part), so decode asks here.
// FF D9 cannot occur inside entropy-coded data (an FF there is stuffed as FF 00), so the
// marker's absence after the first start-of-scan means the file was cut.
bool jpeg_is_truncated(std::string_view bytes);

}  // namespace xltune
