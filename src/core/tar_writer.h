// Writing an uncommitted-until-complete, uncompressed POSIX tar (ustar) of regular files, flat,
// as the reference trainer's trained_model.tar is. Deterministic: members in the order given,
// mode 0644, owner 0/0 with no names, and mtime from SOURCE_DATE_EPOCH (0 when unset), so the
// same files give the same bytes. The archive is written through AtomicFile: after a failure
// (a full disk) no partial tar exists under the target name.
#pragma once

#include <string>
#include <vector>

namespace xltune {

struct TarMember {
  std::string name;  // the name inside the archive (ASCII, at most 100 bytes)
  std::string path;  // the file to copy in
};

// Returns the number of bytes written.
uint64_t write_tar(const std::string& tar_path, const std::vector<TarMember>& members);

}  // namespace xltune
