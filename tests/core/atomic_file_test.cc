#include "core/atomic_file.h"

#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "core/error.h"
#include "test_util.h"

namespace xltune {
namespace {

using testing_util::ScopedTempDir;

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::vector<std::string> list(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  while (auto* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  return out;
}

TEST(AtomicFile, CommitMakesTheWholeFileAppear) {
  ScopedTempDir temp("xltune_atomic");
  const std::string& dir = temp.path();
  {
    AtomicFile f(dir + "/out.bin");
    f.write("hello ");
    EXPECT_FALSE(exists(dir + "/out.bin")) << "the target must not exist before commit";
    f.write("world");
    f.commit();
  }
  EXPECT_EQ(read_file(dir + "/out.bin"), "hello world");
  EXPECT_EQ(list(dir).size(), 1u) << "no temp file may remain";
}

TEST(AtomicFile, ReplacesAnOldFileOnlyOnCommit) {
  ScopedTempDir temp("xltune_atomic");
  const std::string& dir = temp.path();
  write_file_atomic(dir + "/f", "old");
  {
    AtomicFile f(dir + "/f");
    f.write("new, half written");
    EXPECT_EQ(read_file(dir + "/f"), "old");
  }  // destroyed without commit
  EXPECT_EQ(read_file(dir + "/f"), "old");
  EXPECT_EQ(list(dir).size(), 1u);
}

TEST(AtomicFile, InjectedDiskFullLeavesNothingBehind) {
  ScopedTempDir temp("xltune_atomic");
  const std::string& dir = temp.path();
  write_file_atomic(dir + "/f", "old");
  fault::fail_writes_after(10);
  std::string message;
  try {
    AtomicFile f(dir + "/f");
    f.write(std::string(100, 'x'));
    f.commit();
  } catch (const Error& e) {
    message = e.what();
  }
  fault::clear();
  EXPECT_NE(message.find("No space left on device"), std::string::npos) << message;
  EXPECT_NE(message.find(dir + "/f"), std::string::npos) << "the message must name the file: " << message;
  EXPECT_EQ(read_file(dir + "/f"), "old");
  EXPECT_EQ(list(dir).size(), 1u) << "the temp file must be removed";
}

// Per thread: ranks that are threads of a test (tests/job) inject a failure into their own
// files only, as ranks that are processes do.
TEST(AtomicFile, InjectedFailureReachesOnlyItsThread) {
  ScopedTempDir temp("xltune_atomic");
  const std::string& dir = temp.path();
  fault::fail_writes_after(0);
  std::string other_thread_error = "not run";
  std::thread other([&] {
    try {
      write_file_atomic(dir + "/other", "written");
      other_thread_error = "";
    } catch (const Error& e) {
      other_thread_error = e.what();
    }
  });
  other.join();
  EXPECT_THROW(write_file_atomic(dir + "/mine", "x"), Error);
  fault::clear();
  EXPECT_EQ(other_thread_error, "");
  EXPECT_EQ(read_file(dir + "/other"), "written");
}

TEST(AtomicFile, ErrorsNameThePath) {
  EXPECT_THAT([] { write_file_atomic("/nonexistent-dir/x/y", "z"); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("/nonexistent-dir/x/y")));
  EXPECT_THROW(read_file("/nonexistent-dir/file"), Error);
}

}  // namespace
}  // namespace xltune
