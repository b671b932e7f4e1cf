// Files that exist whole or not at all.
//
// AtomicFile writes to a temporary file beside the target ("<name>.tmp.<pid>.<n>"), and
// commit() fsyncs it, renames it over the target and fsyncs the directory, so that after a
// crash at any point the target is either the old file or the complete new one. A file that
// is never committed (an exception, a full disk) is removed by the destructor. A process
// killed outright leaves at most a "*.tmp.*" file, which no reader ever opens.
//
// Tests can make writes fail on purpose (fault::fail_writes_after), in the manner of
// LevelDB's fault-injecting Env, to prove that nothing half-written is left behind; the training
// job's checkpoint writer sets it when its RunHooks ask (job/run_hooks.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace xltune {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  // fsync + rename + directory fsync. After it returns the file is durable at path().
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }
  uint64_t bytes_written() const { return written_; }

 private:
  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// The whole of `bytes` as the file `path`, atomically.
void write_file_atomic(const std::string& path, std::string_view bytes);
// The whole file; the error names the file.
std::string read_file(const std::string& path);
// fsync of a directory, so that a rename inside it is durable.
void fsync_directory(const std::string& dir);

namespace fault {
// After `bytes` more bytes have been written through AtomicFile by the calling thread, every
// write of that thread fails with `error_number` (ENOSPC by default) until clear(). For tests
// only. Per thread, so that when ranks are threads of one process (tests/job) one rank's
// injected failure reaches only its own files, as it does when ranks are processes.
void fail_writes_after(int64_t bytes, int error_number = 28 /* ENOSPC */);
void clear();
}  // namespace fault

}  // namespace xltune
