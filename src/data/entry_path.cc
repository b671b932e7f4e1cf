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
