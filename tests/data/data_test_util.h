// Helpers for the data tests: archives built with libarchive's writer, images encoded with
// OpenCV, temporary folders under the test-data folder (removed when the test ends). Everything
// the bad-input corpus needs is made here at run time; nothing is checked in.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <system_error>
#include <vector>

#include "core/atomic_file.h"
#include "core/check.h"
#include "test_paths.h"

namespace xltune::data_testing {

// `v` as 4 little-endian bytes, as BMP and TIFF headers hold it.
inline std::string le32(uint32_t v) { return {char(v), char(v >> 8), char(v >> 16), char(v >> 24)}; }

inline std::string testdata_root() {
  std::string root = std::string(xltune::test_paths::testdata_dir()) + "/data";
  ::mkdir(xltune::test_paths::testdata_dir(), 0755);
  ::mkdir(root.c_str(), 0755);
  return root;
}

// A fresh folder for one test: <testdata>/data/<tag>-XXXXXX.
inline std::string temp_dir(const std::string& tag) {
  std::string pattern = testdata_root() + "/" + tag + "-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  EXPECT_NE(::mkdtemp(buffer.data()), nullptr) << pattern;
  return buffer.data();
}

// temp_dir() that removes the folder, with everything in it, when the test ends, so that runs
// do not pile up folders under the test data. The error_code overload: a destructor must not throw.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) : path_(temp_dir(tag)) {}
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string source_dir() { return xltune::test_paths::source_dir(); }

// Every path under `dir`, relative, sorted ("a", "a/b.jpg"); links are listed, not followed.
inline void list_tree(const std::string& dir, const std::string& rel, std::vector<std::string>* out) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> names;
  while (auto* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    std::string r = rel.empty() ? n : rel + "/" + n;
    out->push_back(r);
    struct stat st {};
    if (::lstat((dir + "/" + n).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) list_tree(dir + "/" + n, r, out);
  }
}
inline std::vector<std::string> tree(const std::string& dir) {
  std::vector<std::string> out;
  list_tree(dir, "", &out);
  return out;
}

inline void write_file(const std::string& path, const std::string& bytes) { write_file_atomic(path, bytes); }

// A photo-like test pattern (BGR, as OpenCV stores it): smooth gradients and a few blocks.
inline cv::Mat pattern_image(int width, int height, int seed = 0) {
  cv::Mat m(height, width, CV_8UC3);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      m.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uint8_t>((x * 255) / std::max(1, width - 1)),
                                        static_cast<uint8_t>((y * 255) / std::max(1, height - 1)),
                                        static_cast<uint8_t>(((x / 8 + y / 8 + seed) % 2) * 200 + 20));
  return m;
}

inline std::string encode(const std::string& ext, const cv::Mat& image, const std::vector<int>& params = {}) {
  std::vector<uint8_t> out;
  EXPECT_TRUE(cv::imencode(ext, image, out, params)) << ext;
  return std::string(out.begin(), out.end());
}
inline std::string jpeg(int w, int h, int seed = 0) { return encode(".jpg", pattern_image(w, h, seed)); }
inline std::string png(int w, int h, int seed = 0) { return encode(".png", pattern_image(w, h, seed)); }

// 16x16, quadrants red / green / blue / white, saved by PIL as an Adobe (inverted) CMYK JPEG.
inline const std::string kCmykJpeg(
    "\xff\xd8\xff\xee\x00\x0e\x41\x64\x6f\x62\x65\x00\x64\x00\x00\x00\x00\x00\xff\xdb\x00\x43\x00\x01"
    "\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01"
    "\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01"
    "\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\xff\xc0\x00\x14\x08\x00\x10\x00\x10"
    "\x04\x43\x11\x00\x4d\x11\x00\x59\x11\x00\x4b\x11\x00\xff\xc4\x00\x16\x00\x01\x01\x01\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x0b\x00\x0a\xff\xc4\x00\x14\x10\x01\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xda\x00\x0e\x04\x43\x00\x4d\x00\x59\x00\x4b\x00"
    "\x00\x3f\x00\xdf\xc0\xff\x00\xc7\xfe\xdf\xc0\x01\xcf\xf0\x92\x00\x39\xfe\x11\xfe\x0f\xf0\x93\xff"
    "\xd9"    , 193);

struct Entry {
  enum Type { kFile, kDir, kSymlink, kHardlink, kCharDevice };
  std::string name;
  std::string data;  // file contents, or the link target
  Type type = kFile;
};
inline Entry file(std::string name, std::string data) { return {std::move(name), std::move(data), Entry::kFile}; }
inline Entry dir(std::string name) { return {std::move(name), "", Entry::kDir}; }
inline Entry symlink(std::string name, std::string target) { return {std::move(name), std::move(target), Entry::kSymlink}; }
inline Entry hardlink(std::string name, std::string target) { return {std::move(name), std::move(target), Entry::kHardlink}; }
inline Entry char_device(std::string name) { return {std::move(name), "", Entry::kCharDevice}; }

enum class Kind { kZip, kTar, kTarGz, kTarZst, kTarBz2, kTarXz };

// Writes an archive with exactly these entries (names are not cleaned: the corpus needs
// "../x" and "/etc/x"). A passphrase makes an encrypted (ZipCrypto) zip.
inline void write_archive(const std::string& path, Kind kind, const std::vector<Entry>& entries,
                          const std::string& passphrase = "") {
  std::unique_ptr<archive, int (*)(archive*)> a(archive_write_new(), archive_write_free);
  auto ok = [&](int status) { ASSERT_EQ(status, ARCHIVE_OK) << archive_error_string(a.get()); };
  if (kind == Kind::kZip) {
    ok(archive_write_set_format_zip(a.get()));
    if (!passphrase.empty()) {
      ok(archive_write_set_options(a.get(), "zip:encryption=zipcrypt"));
      ok(archive_write_set_passphrase(a.get(), passphrase.c_str()));
    }
  } else {
    ok(archive_write_set_format_pax_restricted(a.get()));
    if (kind == Kind::kTarGz) ok(archive_write_add_filter_gzip(a.get()));
    if (kind == Kind::kTarZst) ok(archive_write_add_filter_zstd(a.get()));
    if (kind == Kind::kTarBz2) ok(archive_write_add_filter_bzip2(a.get()));
    if (kind == Kind::kTarXz) ok(archive_write_add_filter_xz(a.get()));
  }
  ok(archive_write_open_filename(a.get(), path.c_str()));
  for (const auto& e : entries) {
    std::unique_ptr<archive_entry, void (*)(archive_entry*)> entry(archive_entry_new(), archive_entry_free);
    archive_entry_set_pathname(entry.get(), e.name.c_str());
    archive_entry_set_mtime(entry.get(), 1700000000, 0);
    switch (e.type) {
      case Entry::kFile:
        archive_entry_set_filetype(entry.get(), AE_IFREG);
        archive_entry_set_perm(entry.get(), 0644);
        archive_entry_set_size(entry.get(), static_cast<la_int64_t>(e.data.size()));
        break;
      case Entry::kDir:
        archive_entry_set_filetype(entry.get(), AE_IFDIR);
        archive_entry_set_perm(entry.get(), 0755);
        break;
      case Entry::kSymlink:
        archive_entry_set_filetype(entry.get(), AE_IFLNK);
        archive_entry_set_perm(entry.get(), 0777);
        archive_entry_set_symlink(entry.get(), e.data.c_str());
        break;
      case Entry::kHardlink:
        archive_entry_set_filetype(entry.get(), AE_IFREG);
        archive_entry_set_perm(entry.get(), 0644);
        archive_entry_set_hardlink(entry.get(), e.data.c_str());
        archive_entry_set_size(entry.get(), 0);
        break;
      case Entry::kCharDevice:
        archive_entry_set_filetype(entry.get(), AE_IFCHR);
        archive_entry_set_perm(entry.get(), 0666);
        archive_entry_set_rdev(entry.get(), 0x0103);  // /dev/null's numbers
        break;
    }
    int status = archive_write_header(a.get(), entry.get());  // WARN: a name that is not UTF-8
    ASSERT_TRUE(status == ARCHIVE_OK || status == ARCHIVE_WARN) << archive_error_string(a.get());
    if (e.type == Entry::kFile && !e.data.empty()) {
      ASSERT_EQ(archive_write_data(a.get(), e.data.data(), e.data.size()), static_cast<la_ssize_t>(e.data.size()));
    }
  }
  ok(archive_write_close(a.get()));
}

// A zip of stored (uncompressed) files written byte by byte, so that a test controls exactly
// what tools put in the header: the name's bytes and the UTF-8 flag (general-purpose bit 11),
// which Python's zipfile and Windows set for non-ASCII names and older tools do not.
inline uint32_t crc32_of(const std::string& data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char c : data) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

inline std::string stored_zip(const std::vector<std::pair<std::string, std::string>>& files, bool utf8_flag) {
  auto u16 = [](std::string& out, uint32_t v) { out += static_cast<char>(v & 0xFF), out += static_cast<char>(v >> 8 & 0xFF); };
  auto u32 = [&](std::string& out, uint32_t v) { u16(out, v & 0xFFFF), u16(out, v >> 16); };
  std::string body, central;
  const uint32_t flags = utf8_flag ? 0x0800 : 0;
  for (const auto& [name, data] : files) {
    const uint32_t offset = static_cast<uint32_t>(body.size()), crc = crc32_of(data), size = static_cast<uint32_t>(data.size());
    u32(body, 0x04034b50), u16(body, 20), u16(body, flags), u16(body, 0), u16(body, 0), u16(body, 0x21);
    u32(body, crc), u32(body, size), u32(body, size), u16(body, static_cast<uint32_t>(name.size())), u16(body, 0);
    body += name + data;
    u32(central, 0x02014b50), u16(central, 20), u16(central, 20), u16(central, flags), u16(central, 0), u16(central, 0);
    u16(central, 0x21), u32(central, crc), u32(central, size), u32(central, size);
    u16(central, static_cast<uint32_t>(name.size())), u16(central, 0), u16(central, 0), u16(central, 0), u16(central, 0);
    u32(central, 0), u32(central, offset);
    central += name;
  }
  std::string out = body + central;
  u32(out, 0x06054b50), u16(out, 0), u16(out, 0), u16(out, static_cast<uint32_t>(files.size()));
  u16(out, static_cast<uint32_t>(files.size())), u32(out, static_cast<uint32_t>(central.size()));
  u32(out, static_cast<uint32_t>(body.size())), u16(out, 0);
  return out;
}

}  // namespace xltune::data_testing
