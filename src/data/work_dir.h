// A private work folder for one preprocessing run: created with mkdtemp (mode 0700, a fresh
// name, so nothing an archive or another user prepared can be there already) and removed
// with everything in it when the run ends, whether it succeeded or threw.
//
// The folder is flat: extracted files get numbered names ("000017.jpg"), never names from the
// archive, so removal never recurses and never follows a link.
#pragma once

#include <cstdint>
#include <string>

namespace xltune {

class WorkDir {
 public:
  // Creates `parent`/`prefix`XXXXXX. `parent` must exist.
  WorkDir(const std::string& parent, const std::string& prefix);
  ~WorkDir();
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;

  const std::string& path() const { return path_; }
  // A new, unused file path inside the folder: "<path>/000017<extension>".
  std::string new_file_path(const std::string& extension);
  // Keeps the folder after destruction (for debugging a run).
  void keep() { keep_ = true; }

 private:
  std::string path_;
  uint64_t next_ = 0;
  bool keep_ = false;
};

}  // namespace xltune
