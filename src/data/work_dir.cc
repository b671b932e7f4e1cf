#include "data/work_dir.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "core/check.h"
#include "core/log.h"

namespace xltune {

WorkDir::WorkDir(const std::string& parent, const std::string& prefix) {
  std::string pattern = parent + "/" + prefix + "XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  XLTUNE_CHECK(::mkdtemp(buffer.data()) != nullptr, "cannot create a work folder in ", parent, ": ",
               std::strerror(errno));
  path_ = buffer.data();
}

WorkDir::~WorkDir() {
  if (keep_ || path_.empty()) return;
  DIR* dir = ::opendir(path_.c_str());
  if (dir == nullptr) return;
  std::vector<std::string> names;
  while (auto* e = ::readdir(dir)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(dir);
  // unlink never follows a link, and the folder holds only what this run put there.
  for (const auto& n : names)
    if (::unlink((path_ + "/" + n).c_str()) == -1) log_warn("cannot remove ", path_, "/", n, ": ", std::strerror(errno));
  if (::rmdir(path_.c_str()) == -1) log_warn("cannot remove work folder ", path_, ": ", std::strerror(errno));
}

std::string WorkDir::new_file_path(const std::string& extension) {
  char number[32];
  std::snprintf(number, sizeof number, "%06llu", static_cast<unsigned long long>(next_++));
  return path_ + "/" + number + extension;
}

}  // namespace xltune
