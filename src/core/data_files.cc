#include "core/data_files.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "core/check.h"

namespace fs = std::filesystem;

namespace xltune {

std::string find_data_file(const std::string& relative) {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("XLTUNE_DATA_DIR"); env != nullptr && *env != '\0') dirs.push_back(env);
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    fs::path p(exe);
    dirs.push_back((p.parent_path().parent_path().parent_path() / "data").string());  // <repo>/build/bin/xltune
    dirs.push_back((p.parent_path().parent_path() / "data").string());                // <prefix>/bin/xltune
  }
#ifdef XLTUNE_SOURCE_DATA_DIR
  dirs.push_back(XLTUNE_SOURCE_DATA_DIR);
#endif
  std::string tried;
  for (const auto& d : dirs) {
    const std::string path = d + "/" + relative;
    if (fs::is_regular_file(path)) return path;
    tried += (tried.empty() ? "" : ", ") + d;
  }
  XLTUNE_FAIL("data file ", relative, " not found in ", tried.empty() ? "(no candidate folders)" : tried,
              " (launch/setup installs it; or set XLTUNE_DATA_DIR to a folder that has it)");
}

}  // namespace xltune
