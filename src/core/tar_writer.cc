#include "core/tar_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/stat.h>

#include "core/atomic_file.h"
#include "core/check.h"

namespace xltune {

namespace {

constexpr size_t kBlock = 512;

// An octal number in a ustar field of `width` bytes: width-1 digits then NUL.
void put_octal(char* field, size_t width, uint64_t value, const std::string& what) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*llo", static_cast<int>(width - 1), static_cast<unsigned long long>(value));
  XLTUNE_CHECK(std::strlen(buf) == width - 1, "tar: ", what, " ", value, " does not fit a ustar header");
  std::memcpy(field, buf, width);
}

uint64_t header_mtime() {
  const char* env = std::getenv("SOURCE_DATE_EPOCH");
  if (env == nullptr || *env == '\0') return 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(env, &end, 10);
  XLTUNE_CHECK(*end == '\0', "SOURCE_DATE_EPOCH=", env, ": expected seconds since 1970");
  return v;
}

void header_for(char (&h)[kBlock], const std::string& name, uint64_t size, uint64_t mtime) {
  std::memset(h, 0, kBlock);
  XLTUNE_CHECK(!name.empty() && name.size() < 100, "tar: member name '", name, "' must have 1 to 99 bytes");
  for (char ch : name)
    XLTUNE_CHECK(ch > 0x20 && ch < 0x7f && ch != '\\', "tar: member name '", name, "' must be plain ASCII");
  std::memcpy(h, name.data(), name.size());
  put_octal(h + 100, 8, 0644, "mode");
  put_octal(h + 108, 8, 0, "uid");
  put_octal(h + 116, 8, 0, "gid");
  put_octal(h + 124, 12, size, "size");
  put_octal(h + 136, 12, mtime, "mtime");
  h[156] = '0';  // regular file
  std::memcpy(h + 257, "ustar", 6);  // magic with its NUL
  std::memcpy(h + 263, "00", 2);
  // The checksum is computed with its own field as 8 spaces.
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < kBlock; ++i) sum += static_cast<unsigned char>(h[i]);
  char buf[8];
  std::snprintf(buf, sizeof buf, "%06o", sum);
  std::memcpy(h + 148, buf, 7);  // six digits, NUL, then the space that stays
}

}  // namespace

uint64_t write_tar(const std::string& tar_path, const std::vector<TarMember>& members) {
  AtomicFile out(tar_path);
  const uint64_t mtime = header_mtime();
  std::vector<char> buffer(1 << 20);
  for (const auto& m : members) {
    int fd = ::open(m.path.c_str(), O_RDONLY | O_CLOEXEC);
    XLTUNE_CHECK_ERRNO(fd, "tar: open ", m.path);
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      XLTUNE_FAIL("tar: ", m.path, " is not a regular file");
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    char header[kBlock];
    header_for(header, m.name, size, mtime);
    out.write(header, kBlock);
    uint64_t copied = 0;
    while (copied < size) {
      ssize_t n = ::read(fd, buffer.data(), std::min<uint64_t>(buffer.size(), size - copied));
      if (n <= 0) {
        int err = errno;
        ::close(fd);
        XLTUNE_FAIL("tar: read ", m.path, ": ", n == 0 ? "the file shrank while being archived" : std::strerror(err));
      }
      out.write(buffer.data(), static_cast<size_t>(n));
      copied += static_cast<uint64_t>(n);
    }
    ::close(fd);
    const size_t pad = (kBlock - size % kBlock) % kBlock;
    static const char zeros[kBlock] = {};
    if (pad) out.write(zeros, pad);
  }
  static const char end[2 * kBlock] = {};
  out.write(end, sizeof end);
  const uint64_t bytes = out.bytes_written();
  out.commit();
  return bytes;
}

}  // namespace xltune
