#include "core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/check.h"

namespace xltune {

namespace {
// This thread's injected failure (fault::fail_writes_after): bytes left before it; -1: none.
thread_local int64_t t_fault_budget = -1;
thread_local int t_fault_errno = ENOSPC;
std::atomic<uint64_t> g_temp_counter{0};

std::string parent_directory(const std::string& path) {
  auto pos = path.rfind('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

// Returns how many of `size` bytes may be written before the injected fault fires.
size_t fault_allowance(size_t size) {
  if (t_fault_budget < 0) return size;
  size_t allowed = std::min<size_t>(size, static_cast<size_t>(t_fault_budget));
  t_fault_budget -= static_cast<int64_t>(allowed);
  return allowed;
}
}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  XLTUNE_CHECK(!path_.empty(), "output file: expected a path, got an empty one");
  temp_path_ = path_ + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(g_temp_counter++);
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  XLTUNE_CHECK_ERRNO(fd_, "cannot create ", temp_path_, " (for ", path_, ")");
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

void AtomicFile::write(const void* data, size_t size) {
  XLTUNE_CHECK(fd_ >= 0 && !committed_, "write to ", path_, " after commit");
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    size_t chunk = std::min<size_t>(size, size_t{1} << 30);
    size_t allowed = fault_allowance(chunk);
    if (allowed == 0) {
      XLTUNE_FAIL("cannot write ", path_, ": ", std::strerror(t_fault_errno), " (injected)");
    }
    ssize_t n = ::write(fd_, p, allowed);
    if (n < 0 && errno == EINTR) continue;
    XLTUNE_CHECK_ERRNO(n, "cannot write ", path_, " after ", written_, " bytes");
    p += n;
    size -= static_cast<size_t>(n);
    written_ += static_cast<uint64_t>(n);
  }
}

void AtomicFile::commit() {
  XLTUNE_CHECK(fd_ >= 0 && !committed_, "commit of ", path_, " twice");
  XLTUNE_CHECK_ERRNO(::fsync(fd_), "cannot fsync ", temp_path_);
  int fd = fd_;
  fd_ = -1;
  XLTUNE_CHECK_ERRNO(::close(fd), "cannot close ", temp_path_);
  XLTUNE_CHECK_ERRNO(::rename(temp_path_.c_str(), path_.c_str()), "cannot rename ", temp_path_, " to ", path_);
  committed_ = true;
  fsync_directory(parent_directory(path_));
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFile file(path);
  file.write(bytes);
  file.commit();
}

std::string read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  XLTUNE_CHECK_ERRNO(fd, "cannot open ", path);
  std::string out;
  char buffer[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      XLTUNE_FAIL("cannot read ", path, ": ", std::strerror(err));
    }
    if (n == 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

void fsync_directory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  XLTUNE_CHECK_ERRNO(fd, "cannot open directory ", dir);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some file systems (tmpfs in containers, some network mounts) refuse directory fsync; the
  // rename is then as durable as that file system makes it.
  if (rc == -1 && err != EINVAL && err != ENOTSUP) XLTUNE_FAIL("cannot fsync directory ", dir, ": ", std::strerror(err));
}

namespace fault {
void fail_writes_after(int64_t bytes, int error_number) {
  t_fault_errno = error_number;
  t_fault_budget = bytes;
}
void clear() { t_fault_budget = -1; }
}  // namespace fault

}  // namespace xltune
