// CRC-32C: the standard check value, the instruction and table forms equal at every length and
// alignment, chunked updates equal one pass, and a file's checksum equals its bytes'.
#include "core/crc32c.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <vector>

#include "test_util.h"

namespace xltune {
namespace {

TEST(Crc32c, CheckValue) {
  // The catalogue's check value for CRC-32C (iSCSI): "123456789" -> 0xE3069283.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c_portable("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
}

TEST(Crc32c, FastAndPortableAgreeAtEveryLengthAndAlignment) {
  std::mt19937 rng(1);
  std::vector<uint8_t> data(4096 + 16);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  for (size_t offset = 0; offset < 9; ++offset)
    for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{63}, size_t{1000}, size_t{4096}})
      EXPECT_EQ(crc32c(data.data() + offset, n), crc32c_portable(data.data() + offset, n)) << offset << " " << n;
}

TEST(Crc32c, ChunkedEqualsOnePass) {
  std::vector<uint8_t> data(3001);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 31 + 7);
  const uint32_t whole = crc32c(data.data(), data.size());
  uint32_t c = 0;
  for (size_t at = 0; at < data.size(); at += 113) c = crc32c(data.data() + at, std::min<size_t>(113, data.size() - at), c);
  EXPECT_EQ(c, whole);
}

TEST(Crc32c, FileChecksumIsItsBytes) {
  testing_util::ScopedTempDir dir;
  std::vector<char> data(3 << 20);  // more than one read buffer
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i % 251);
  const std::string path = dir.path() + "/f.bin";
  std::ofstream(path, std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
  uint64_t size = 0;
  EXPECT_EQ(crc32c_of_file(path, &size), crc32c(data.data(), data.size()));
  EXPECT_EQ(size, data.size());
}

}  // namespace
}  // namespace xltune
