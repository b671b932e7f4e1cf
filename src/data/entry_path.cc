#include "data/entry_path.h"

#include <cctype>
#include <cstdint>
#include <vector>

#include "core/check.h"

namespace xltune {

namespace {
// Length of the valid UTF-8 sequence starting at s[i], or 0 (overlong forms, surrogates and
// code points above U+10FFFF are invalid, as in RFC 3629).
size_t utf8_sequence(std::string_view s, size_t i) {
  auto c = static_cast<uint8_t>(s[i]);
  if (c < 0x80) return 1;
  size_t n = 0;
  uint32_t cp = 0, min = 0;
  if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1F, min = 0x80;
  else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F, min = 0x800;
  else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07, min = 0x10000;
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    auto d = static_cast<uint8_t>(s[i + k]);
    if ((d & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (d & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

std::string printable(std::string_view raw) {
  std::string out;
  for (char c : make_valid_utf8(raw)) {
    if (static_cast<uint8_t>(c) < 0x20 || c == 0x7F) out += '?';
    else out += c;
  }
  return out;
}
}  // namespace

std::string make_valid_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    size_t n = utf8_sequence(text, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

bool is_valid_utf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    size_t n = utf8_sequence(text, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string cp437_to_utf8(std::string_view bytes) {
  // Code points of bytes 0x80..0xFF in code page 437 (0x00..0x7F are ASCII).
  static const char16_t kHigh[128] = {
      0x00C7, 0x00FC, 0x00E9, 0x00E2, 0x00E4, 0x00E0, 0x00E5, 0x00E7, 0x00EA, 0x00EB, 0x00E8, 0x00EF, 0x00EE, 0x00EC,
      0x00C4, 0x00C5, 0x00C9, 0x00E6, 0x00C6, 0x00F4, 0x00F6, 0x00F2, 0x00FB, 0x00F9, 0x00FF, 0x00D6, 0x00DC, 0x00A2,
      0x00A3, 0x00A5, 0x20A7, 0x0192, 0x00E1, 0x00ED, 0x00F3, 0x00FA, 0x00F1, 0x00D1, 0x00AA, 0x00BA, 0x00BF, 0x2310,
      0x00AC, 0x00BD, 0x00BC, 0x00A1, 0x00AB, 0x00BB, 0x2591, 0x2592, 0x2593, 0x2502, 0x2524, 0x2561, 0x2562, 0x2556,
      0x2555, 0x2563, 0x2551, 0x2557, 0x255D, 0x255C, 0x255B, 0x2510, 0x2514, 0x2534, 0x252C, 0x251C, 0x2500, 0x253C,
      0x255E, 0x255F, 0x255A, 0x2554, 0x2569, 0x2566, 0x2560, 0x2550, 0x256C, 0x2567, 0x2568, 0x2564, 0x2565, 0x2559,
      0x2558, 0x2552, 0x2553, 0x256B, 0x256A, 0x2518, 0x250C, 0x2588, 0x2584, 0x258C, 0x2590, 0x2580, 0x03B1, 0x00DF,
      0x0393, 0x03C0, 0x03A3, 0x03C3, 0x00B5, 0x03C4, 0x03A6, 0x0398, 0x03A9, 0x03B4, 0x221E, 0x03C6, 0x03B5, 0x2229,
      0x2261, 0x00B1, 0x2265, 0x2264, 0x2320, 0x2321, 0x00F7, 0x2248, 0x00B0, 0x2219, 0x00B7, 0x221A, 0x207F, 0x00B2,
      0x25A0, 0x00A0};
  std::string out;
  for (unsigned char b : bytes) {
    const unsigned c = b < 0x80 ? b : kHigh[b - 0x80];
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      out += static_cast<char>(0xE0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

EntryPath normalize_entry_path(std::string_view raw, const std::string& container) {
  const std::string shown = printable(raw);
  XLTUNE_CHECK(!raw.empty(), container, ": an entry has an empty name");
  XLTUNE_CHECK(raw.find('\0') == std::string_view::npos, container, ": entry '", shown, "' has a NUL byte in its name");
  // Windows tools write '\' separators into zip files; treat them as separators so that
  // "a\..\..\x" is seen for what it is.
  std::string text(raw);
  for (char& c : text)
    if (c == '\\') c = '/';
  XLTUNE_CHECK(text[0] != '/', container, ": entry '", shown, "' has an absolute path; refusing the archive");
  XLTUNE_CHECK(!(text.size() >= 2 && text[1] == ':' && std::isalpha(static_cast<unsigned char>(text[0]))), container,
               ": entry '", shown, "' starts with a drive letter; refusing the archive");

  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('/', start);
    if (end == std::string::npos) end = text.size();
    std::string part = text.substr(start, end - start);
    start = end + 1;
    if (part.empty() || part == ".") continue;
    XLTUNE_CHECK(part != "..", container, ": entry '", shown,
                 "' has a '..' part (it would leave the extraction folder); refusing the archive");
    parts.push_back(std::move(part));
  }
  XLTUNE_CHECK(!parts.empty(), container, ": entry '", shown, "' has no name");

  EntryPath out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out.name += '/';
    out.name += parts[i];
    if (parts[i] == "__MACOSX") out.skip = true, out.why_skip = "macOS metadata (__MACOSX)";
    else if (parts[i][0] == '.' && !out.skip) out.skip = true, out.why_skip = "hidden file or folder";
  }
  out.name = make_valid_utf8(out.name);
  return out;
}

std::string base_name(const std::string& path) {
  auto pos = path.rfind('/');
  return pos == std::string::npos ? path : path.substr(pos + 1);
}

std::string stem_path(const std::string& path) {
  auto slash = path.rfind('/');
  auto dot = path.rfind('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash) || dot == slash + 1) return path;
  return path.substr(0, dot);
}

std::string lower_extension(const std::string& path) {
  std::string base = base_name(path);
  auto dot = base.rfind('.');
  if (dot == std::string::npos || dot == 0) return "";
  std::string ext = base.substr(dot);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

}  // namespace xltune
