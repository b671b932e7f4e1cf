// String tests that C++17 lacks (std::string's starts_with and ends_with are C++20).
// One copy for every file: the unity builds (Note [Unity builds], docs/design-notes.md) compile
// several .cc files as one, where two file-local copies of a function would collide.
#pragma once

#include <string_view>

namespace xltune {

inline bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

inline bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace xltune
