// The one error type of xltune, and the functions that raise it with file and line.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace xltune {

// Thrown for every failure that a user can cause or fix: bad input, a bad option, a missing
// file, a failed library call. what() is one line that says what was expected and what was
// found; where() says which source line raised it (for bug reports, not for users).
class Error : public std::runtime_error {
 public:
  Error(std::string message, const char* file, int line);
  const std::string& where() const { return where_; }

 private:
  std::string where_;
};

[[noreturn]] void raise_error(const char* file, int line, const std::string& message);

// Joins any streamable values into one string: str("tensor ", name, " has ", n, " dims").
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

}  // namespace xltune
