// libFuzzer target for the data part's parsers of untrusted bytes: image magic and headers
// (JPEG markers, PNG, WebP, BMP, TIFF IFDs), the JPEG truncation check, EXIF orientation in
// every container, caption CSVs, archive entry names, and xltune's own BMP decoder (pixels
// and all: data/bmp_decode.h). Each must return or throw
// xltune::Error, never read out of bounds. The first byte picks which parser the rest goes to.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"
#include "data/bmp_decode.h"
#include "data/csv.h"
#include "data/entry_path.h"
#include "data/exif_orientation.h"
#include "data/image_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    switch (data[0] % 5) {
      case 0: {
        xltune::ImageFormat f = xltune::sniff_image_format(bytes.substr(0, xltune::kSniffBytes));
        if (xltune::is_decodable(f)) xltune::read_image_header(bytes, "fuzz");
        xltune::jpeg_is_truncated(bytes);
        break;
      }
      case 1:
        for (auto f : {xltune::ImageFormat::kJpeg, xltune::ImageFormat::kPng, xltune::ImageFormat::kWebp}) {
          int o = xltune::exif_orientation(bytes, f);
          if (o < 1 || o > 8) __builtin_trap();
        }
        break;
      case 2: xltune::parse_csv(bytes, "fuzz.csv"); break;
      case 3: {
        std::string valid = xltune::make_valid_utf8(bytes);
        if (xltune::make_valid_utf8(valid) != valid) __builtin_trap();  // idempotent
        xltune::normalize_entry_path(bytes, "fuzz.zip");
        break;
      }
      case 4: {
        // "BM" prefixed, so that the fuzzer starts inside the decoder, not at its magic check.
        const std::string bmp = "BM" + std::string(bytes);
        xltune::BmpPixels p = xltune::decode_bmp(bmp, "fuzz.bmp", uint64_t{1} << 20);
        if (p.pixels.size() != static_cast<size_t>(p.width) * p.height * p.channels) __builtin_trap();
        break;
      }
    }
  } catch (const xltune::Error&) {
    // A clear rejection is the correct outcome.
  }
  return 0;
}
