// Names of archive entries and folder files, made safe before anything is done with them.
//
// An archive is untrusted input: its entry names may be absolute ("/etc/passwd"), climb out
// ("../../.bashrc", "a\..\..\x" from Windows tools) or carry bytes that are not UTF-8. xltune
// never creates a file or folder from an entry name (extracted images get numbered names in
// the work folder), but the name is still the sample's name in the shards, the logs and the
// caption matching, so it is normalised here and a hostile one is refused with an error that
// names it.
#pragma once

#include <string>
#include <string_view>

namespace xltune {

struct EntryPath {
  std::string name;      // normalised: '/'-separated, no "." or empty parts, valid UTF-8
  bool skip = false;     // true for hidden files and macOS metadata (__MACOSX, ._*, .DS_Store)
  std::string why_skip;  // for the debug log
};

// Normalises `raw` (an entry of `container`, for messages). Throws Error for an absolute path,
// a drive letter, a ".." part or an empty name.
EntryPath normalize_entry_path(std::string_view raw, const std::string& container);

// `text` with every invalid UTF-8 sequence replaced by U+FFFD, so that it can go into JSON and
// HDF5 UTF-8 strings.
std::string make_valid_utf8(std::string_view text);

// True when `text` is UTF-8 throughout.
bool is_valid_utf8(std::string_view text);
// Bytes in IBM code page 437 as UTF-8: how zip tools read names written without the zip
// format's UTF-8 flag (Python's zipfile, Windows' built-in zip, Info-ZIP's unzip).
std::string cp437_to_utf8(std::string_view bytes);

// "a/b/img.JPG" -> "img.JPG"; "a/b/img.JPG" -> "a/b/img" (stem_path); lower-case extension ".jpg".
std::string base_name(const std::string& path);
std::string stem_path(const std::string& path);
std::string lower_extension(const std::string& path);

}  // namespace xltune
