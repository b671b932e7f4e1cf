#include "dist/id_file.h"

#include <sys/stat.h>

#include <filesystem>
#include <thread>

#include "core/atomic_file.h"
#include "core/check.h"

namespace xltune {

void clear_id_file(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove(path, ec);
  XLTUNE_CHECK(!ec, path, ": could not remove the id file an earlier run left (", ec.message(), ")");
}

void publish_id_file(const std::string& path, const std::string& bytes) { write_file_atomic(path, bytes); }

std::string wait_for_id_file(const std::string& path, size_t size, std::chrono::system_clock::time_point not_before,
                             std::chrono::milliseconds timeout, int rank) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const auto not_before_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(not_before.time_since_epoch()).count();
  bool saw_stale = false;
  for (;;) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
      const long long written_ns = static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
      if (written_ns >= not_before_ns && static_cast<size_t>(st.st_size) == size) {
        const std::string bytes = read_file(path);
        if (bytes.size() == size) return bytes;
      } else if (written_ns < not_before_ns) {
        saw_stale = true;
      }
    }
    XLTUNE_CHECK(std::chrono::steady_clock::now() < deadline, "rank ", rank, " waited ",
                 std::chrono::duration_cast<std::chrono::seconds>(timeout).count(), " s for ", path,
                 " from rank 0", saw_stale ? " (it holds an id an earlier run left)" : "");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace xltune
