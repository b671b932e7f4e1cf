// dist/id_file.h: the NCCL id exchange without MPI never takes an earlier run's file.
#include "dist/id_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "core/atomic_file.h"
#include "core/error.h"
#include "test_util.h"

namespace xltune {
namespace {

using std::chrono::milliseconds;
using std::chrono::system_clock;

TEST(IdFile, AReaderTakesTheFileRankZeroWritesAfterItStarted) {
  testing_util::ScopedTempDir dir;
  const std::string path = dir / "nccl.id";
  const auto started = system_clock::now();
  std::thread writer([&] {
    std::this_thread::sleep_for(milliseconds(200));
    clear_id_file(path);
    publish_id_file(path, "0123456789abcdef");
  });
  EXPECT_EQ(wait_for_id_file(path, 16, started - std::chrono::seconds(1), milliseconds(10000), 1), "0123456789abcdef");
  writer.join();
}

TEST(IdFile, AnEarlierRunsFileIsNeverTaken) {
  testing_util::ScopedTempDir dir;
  const std::string path = dir / "nccl.id";
  write_file_atomic(path, "stale-id-from-x1");  // an earlier run's
  std::this_thread::sleep_for(milliseconds(50));
  const auto started = system_clock::now();
  // Rank 0 of this run has not written yet: the reader waits, then fails naming the old file.
  EXPECT_THAT([&] { wait_for_id_file(path, 16, started, milliseconds(300), 3); },
              testing::ThrowsMessage<Error>(testing::AllOf(testing::HasSubstr("rank 3 waited"),
                                                           testing::HasSubstr(path),
                                                           testing::HasSubstr("an earlier run left"))));
  // Once rank 0 clears it and publishes its own, the reader takes the new bytes.
  std::thread writer([&] {
    std::this_thread::sleep_for(milliseconds(100));
    clear_id_file(path);
    publish_id_file(path, "fresh-id-of-run2");
  });
  EXPECT_EQ(wait_for_id_file(path, 16, started, milliseconds(10000), 3), "fresh-id-of-run2");
  writer.join();
}

TEST(IdFile, AFileOfTheWrongSizeIsNotAnId) {
  testing_util::ScopedTempDir dir;
  const std::string path = dir / "nccl.id";
  const auto started = system_clock::now() - std::chrono::seconds(1);
  write_file_atomic(path, "short");
  EXPECT_THROW(wait_for_id_file(path, 16, started, milliseconds(200), 1), Error);
  clear_id_file(path);
  clear_id_file(path);  // nothing there: not an error
}

}  // namespace
}  // namespace xltune
