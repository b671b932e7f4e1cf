// trained_model.tar's writer: ustar headers that tar tools read, deterministic bytes, and no
// partial archive after a failed write.
#include "core/tar_writer.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>

#include "core/atomic_file.h"
#include "core/error.h"
#include "test_util.h"

namespace xltune {
namespace {

using testing_util::ScopedTempDir;

unsigned checksum_of(const std::string& header) {
  unsigned sum = 0;
  for (size_t i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(header[i]);
  return sum;
}

TEST(TarWriter, HeadersSizesAndPaddingAreUstar) {
  ScopedTempDir dir("tar");
  write_file_atomic(dir / "a.bin", std::string(700, 'x'));
  write_file_atomic(dir / "b.json", "{}\n");
  const uint64_t bytes = write_tar(dir / "out.tar", {{"a.bin", dir / "a.bin"}, {"b.json", dir / "b.json"}});
  const std::string tar = read_file(dir / "out.tar");
  // header + 700 bytes padded to 1024, header + 3 bytes padded to 512, two zero blocks.
  ASSERT_EQ(bytes, 512u + 1024 + 512 + 512 + 1024);
  ASSERT_EQ(tar.size(), bytes);
  const std::string h1 = tar.substr(0, 512), h2 = tar.substr(1536, 512);
  EXPECT_EQ(std::string(h1.c_str()), "a.bin");
  EXPECT_EQ(h1.substr(124, 11), "00000001274");  // 700 in octal
  EXPECT_EQ(h1.substr(257, 6), std::string("ustar\0", 6));
  EXPECT_EQ(h1[156], '0');
  EXPECT_EQ(std::stoul(h1.substr(148, 6), nullptr, 8), checksum_of(h1));
  EXPECT_EQ(std::string(h2.c_str()), "b.json");
  EXPECT_EQ(tar.substr(2048, 3), "{}\n");
  EXPECT_EQ(tar.substr(tar.size() - 1024), std::string(1024, '\0'));
}

TEST(TarWriter, SameFilesSameBytes) {
  ScopedTempDir dir("tar");
  write_file_atomic(dir / "a.bin", "payload");
  write_tar(dir / "1.tar", {{"a.bin", dir / "a.bin"}});
  write_tar(dir / "2.tar", {{"a.bin", dir / "a.bin"}});
  EXPECT_EQ(read_file(dir / "1.tar"), read_file(dir / "2.tar"));
}

TEST(TarWriter, AFullDiskLeavesNoArchive) {
  ScopedTempDir dir("tar");
  write_file_atomic(dir / "a.bin", std::string(100000, 'x'));
  fault::fail_writes_after(50000);
  EXPECT_THROW(write_tar(dir / "out.tar", {{"a.bin", dir / "a.bin"}}), Error);
  fault::clear();
  struct stat st {};
  EXPECT_NE(::stat((dir / "out.tar").c_str(), &st), 0) << "a failed write must leave no tar";
}

TEST(TarWriter, BadNamesAndMissingFilesAreErrors) {
  ScopedTempDir dir("tar");
  write_file_atomic(dir / "a.bin", "x");
  EXPECT_THROW(write_tar(dir / "o.tar", {{std::string(120, 'n'), dir / "a.bin"}}), Error);
  EXPECT_THROW(write_tar(dir / "o.tar", {{"a b", dir / "a.bin"}}), Error);
  EXPECT_THROW(write_tar(dir / "o.tar", {{"a.bin", dir / "missing"}}), Error);
}

}  // namespace
}  // namespace xltune
