#include "data/ingest.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "core/check.h"
#include "data/ingest_collector.h"

namespace xltune {

namespace {
constexpr int kMaxFolderDepth = 64;

class FileReader : public EntryReader {
 public:
  FileReader(const std::string& path, const std::string& name) : path_(path), name_(name) {}
  ~FileReader() override {
    if (fd_ >= 0) ::close(fd_);
  }
  size_t read(char* buffer, size_t size) override {
    if (fd_ < 0) {
      // Opened on first read: most files only have their first bytes read, many none.
      fd_ = ::open(path_.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      XLTUNE_CHECK_ERRNO(fd_, "cannot open ", path_);
    }
    for (;;) {
      ssize_t n = ::read(fd_, buffer, size);
      if (n < 0 && errno == EINTR) continue;
      XLTUNE_CHECK_ERRNO(n, "cannot read ", path_, " ('", name_, "')");
      return static_cast<size_t>(n);
    }
  }

 private:
  std::string path_, name_;
  int fd_ = -1;
};

std::vector<std::string> sorted_entries(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  XLTUNE_CHECK(d != nullptr, "cannot open folder ", dir, ": ", std::strerror(errno));
  std::vector<std::string> names;
  while (auto* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

void walk(const std::string& dir, const std::string& relative, int depth, IngestCollector& c) {
  XLTUNE_CHECK(depth <= kMaxFolderDepth, c.input(), ": folders nested deeper than ", kMaxFolderDepth, " at '", relative, "'");
  for (const auto& n : sorted_entries(dir)) {
    const std::string full = dir + "/" + n;
    const std::string rel = relative.empty() ? n : relative + "/" + n;
    c.count_entry(rel);
    EntryPath path = normalize_entry_path(rel, c.input());
    if (path.skip) {
      c.skip(path.name, path.why_skip, false);
      continue;
    }
    struct stat st {};
    XLTUNE_CHECK_ERRNO(::lstat(full.c_str(), &st), "cannot stat ", full);
    if (S_ISLNK(st.st_mode)) {
      c.skip(path.name, "a symbolic link; links are never followed", true);
    } else if (S_ISDIR(st.st_mode)) {
      walk(full, rel, depth + 1, c);
    } else if (S_ISREG(st.st_mode)) {
      FileReader reader(full, path.name);
      c.add_file(path, reader, &full, static_cast<uint64_t>(st.st_size));
    } else {
      c.skip(path.name, "not a regular file (a device, FIFO or socket)", true);
    }
  }
}
}  // namespace

void ingest_folder(const std::string& folder, IngestCollector& c) { walk(folder, "", 0, c); }

IngestResult ingest(const std::string& input, WorkDir& work, const IngestLimits& limits) {
  XLTUNE_CHECK(!input.empty(), "--input_images: expected a .zip or .tar archive or a folder, got an empty path");
  struct stat st {};
  XLTUNE_CHECK_ERRNO(::stat(input.c_str(), &st), "--input_images ", input, ": cannot access");
  IngestCollector collector(input, work, limits);
  if (S_ISDIR(st.st_mode)) ingest_folder(input, collector);
  else if (S_ISREG(st.st_mode)) ingest_archive(input, collector);
  else XLTUNE_FAIL("--input_images ", input, ": expected a .zip or .tar archive or a folder");
  return collector.finish();
}

}  // namespace xltune
