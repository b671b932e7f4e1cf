#include "data/png_text.h"

#include <zlib.h>


#include "core/atomic_file.h"
#include "core/check.h"
#include "data/image_codec.h"

namespace xltune {
namespace {

const char kSignature[] = "\x89PNG\r\n\x1a\n";

void put_u32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}

uint32_t get_u32(const std::string& b, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
  return v;
}

std::string chunk(const std::string& type, const std::string& data) {
  std::string out;
  put_u32(out, static_cast<uint32_t>(data.size()));
  const std::string body = type + data;
  out += body;
  put_u32(out, static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
  return out;
}

bool ascii(const std::string& s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

}  // namespace

std::string encode_png_with_text(const cv::Mat& rgb, const std::vector<std::pair<std::string, std::string>>& texts) {
  XLTUNE_CHECK(rgb.type() == CV_8UC3, "PNG: expected 8-bit RGB pixels");
  const std::string png = encode_png(rgb, ChannelOrder::kRgb);
  // Signature (8) + IHDR (4 length + 4 type + 13 data + 4 CRC).
  const size_t after_ihdr = 8 + 25;
  XLTUNE_CHECK(png.size() > after_ihdr && png.compare(12, 4, "IHDR") == 0, "PNG: unexpected encoder output");
  std::string chunks;
  for (const auto& [key, text] : texts) {
    XLTUNE_CHECK(!key.empty() && key.size() < 80 && ascii(key), "PNG: bad text keyword '", key, "'");
    if (ascii(text)) chunks += chunk("tEXt", key + '\0' + text);
    else chunks += chunk("iTXt", key + '\0' + '\0' + '\0' + '\0' + '\0' + text);  // no compression, no language
  }
  return png.substr(0, after_ihdr) + chunks + png.substr(after_ihdr);
}

void write_png_with_text(const std::string& path, const cv::Mat& rgb,
                         const std::vector<std::pair<std::string, std::string>>& texts) {
  write_file_atomic(path, encode_png_with_text(rgb, texts));
}

std::vector<std::pair<std::string, std::string>> read_png_text(const std::string& b, const std::string& name) {
  XLTUNE_CHECK(b.size() >= 8 && b.compare(0, 8, std::string(kSignature, 8)) == 0, name, ": not a PNG file");
  std::vector<std::pair<std::string, std::string>> out;
  size_t at = 8;
  while (at + 12 <= b.size()) {
    const uint32_t len = get_u32(b, at);
    XLTUNE_CHECK(at + 12 + len <= b.size(), name, ": truncated PNG chunk at byte ", at);
    const std::string type = b.substr(at + 4, 4), data = b.substr(at + 8, len);
    if (type == "tEXt" || type == "iTXt") {
      const size_t zero = data.find('\0');
      XLTUNE_CHECK(zero != std::string::npos, name, ": malformed ", type, " chunk");
      std::string text = data.substr(zero + 1);
      if (type == "iTXt") {
        XLTUNE_CHECK(text.size() >= 2 && text[0] == '\0', name, ": compressed iTXt is not read");
        const size_t lang_end = text.find('\0', 2), key_end = text.find('\0', lang_end + 1);
        XLTUNE_CHECK(lang_end != std::string::npos && key_end != std::string::npos, name, ": malformed iTXt chunk");
        text = text.substr(key_end + 1);
      }
      out.emplace_back(data.substr(0, zero), text);
    }
    if (type == "IEND") break;
    at += 12 + len;
  }
  return out;
}

}  // namespace xltune
