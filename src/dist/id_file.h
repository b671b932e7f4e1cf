// Rank 0's few bytes (NCCL's unique id) handed to ranks that share nothing but a file system:
// NCCL without MPI, as llm.c's "fs" bootstrap. A file left by an earlier run must never be
// taken for this run's (NCCL would then wait forever for peers that joined another id: the
// GPU-readiness review's R5a), so:
//   - rank 0 removes the file before it makes its id, then writes it atomically;
//   - the others take only a file written after `not_before` (their own start, less the
//     launcher's spread), and wait for one until a deadline, then fail naming the file.
// A per-run file name (the launcher's job id in it) is still the caller's best defence.
#pragma once

#include <chrono>
#include <string>

namespace xltune {

// Rank 0: removes `path` if it is there (before any id exists, so no reader can take an old one
// after this returns).
void clear_id_file(const std::string& path);
// Rank 0: the bytes, written to a temporary name and renamed.
void publish_id_file(const std::string& path, const std::string& bytes);

// Other ranks: the bytes of `path` once it exists, is `size` bytes long and was last written
// at or after `not_before`; polls every 50 ms; throws Error naming the file and `rank` when
// `timeout` passes first.
std::string wait_for_id_file(const std::string& path, size_t size, std::chrono::system_clock::time_point not_before,
                             std::chrono::milliseconds timeout, int rank);

}  // namespace xltune
