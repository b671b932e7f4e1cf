#include "core/error.h"

namespace xltune {

namespace {
// Keeps only the part of the path below src/ (or the file name), so messages stay short.
std::string short_path(const char* file) {
  std::string path(file);
  auto pos = path.rfind("/src/");
  if (pos != std::string::npos) return path.substr(pos + 5);
  pos = path.rfind('/');
  return pos == std::string::npos ? path : path.substr(pos + 1);
}
}  // namespace

Error::Error(std::string message, const char* file, int line)
    : std::runtime_error(std::move(message)), where_(short_path(file) + ":" + std::to_string(line)) {}

void raise_error(const char* file, int line, const std::string& message) {
  throw Error(message, file, line);
}

}  // namespace xltune
