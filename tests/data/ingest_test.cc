// The bad-input corpus for ingest: every archive is built here, at run time, with libarchive's
// writer; each case ends in images found, a skip with a warning, or one clear error, and
// nothing is ever written outside the work folder.
#include <clocale>
#include "data/ingest.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <system_error>

#include "core/error.h"
#include "data/work_dir.h"
#include "data_test_util.h"
#include "test_util.h"

namespace xltune {
namespace {

using namespace data_testing;

// One sandbox per test: sandbox/input (the archive), sandbox/work (the work folder's parent),
// sandbox/outside (where a hostile archive would like to write). Removed with everything in it
// when the test ends (error_code overload: a destructor must not throw); not copyable, so only
// one object removes it.
struct Sandbox {
  std::string root = temp_dir("ingest");
  Sandbox() {
    ::mkdir((root + "/work").c_str(), 0755);
    ::mkdir((root + "/outside").c_str(), 0755);
  }
  ~Sandbox() {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;
  std::string path(const std::string& name) const { return root + "/" + name; }

  struct Outcome {
    IngestResult result;
    std::string error;     // what() of the Error, "" when none
    std::string warnings;  // stderr during the run
  };

  // Runs ingest and checks the invariants every case shares: only the work folder gained
  // files while it existed, and nothing is left after it is removed.
  Outcome run(const std::string& input, const IngestLimits& limits = {}) {
    Outcome out;
    std::vector<std::string> before = tree(root);
    testing::internal::CaptureStderr();
    {
      WorkDir work(root + "/work", "wd-");
      try {
        out.result = ingest(input, work, limits);
      } catch (const Error& e) {
        out.error = e.what();
      }
      for (const auto& p : tree(root)) {
        bool known = std::find(before.begin(), before.end(), p) != before.end();
        bool in_work = p.rfind("work/wd-", 0) == 0;
        EXPECT_TRUE(known || in_work) << "ingest wrote outside its work folder: " << p;
        if (in_work && p.find('/', 8) != std::string::npos) {
          EXPECT_EQ(p.find('/', p.find('/', 8) + 1), std::string::npos) << "the work folder must stay flat: " << p;
        }
      }
    }
    out.warnings = testing::internal::GetCapturedStderr();
    EXPECT_EQ(tree(root + "/work"), std::vector<std::string>{}) << "work folder not removed";
    EXPECT_EQ(tree(root + "/outside"), std::vector<std::string>{});
    return out;
  }

  Outcome run_archive(Kind kind, const std::vector<Entry>& entries, const IngestLimits& limits = {}) {
    std::string input = path(kind == Kind::kZip ? "input.zip" : "input.tar");
    write_archive(input, kind, entries);
    return run(input, limits);
  }
};

std::vector<std::string> names(const IngestResult& r) {
  std::vector<std::string> out;
  for (const auto& i : r.images) out.push_back(i.name);
  return out;
}

std::vector<Entry> nested_photos() {
  return {dir("set/"), dir("set/a/"), file("set/a/one.jpg", jpeg(40, 30, 1)), file("set/a/b/c/two.png", png(20, 50, 2)),
          file("set/three.webp", encode(".webp", pattern_image(33, 17))), file("set/four.bmp", encode(".bmp", pattern_image(8, 8))),
          file("set/five.tiff", encode(".tiff", pattern_image(9, 7)))};
}

TEST(IngestCorpus, ZipWithNestedFoldersFindsEveryImage) {
  Sandbox s;
  auto out = s.run_archive(Kind::kZip, nested_photos());
  ASSERT_EQ(out.error, "");
  ASSERT_EQ(names(out.result), (std::vector<std::string>{"set/a/b/c/two.png", "set/a/one.jpg", "set/five.tiff",
                                                         "set/four.bmp", "set/three.webp"}));
  EXPECT_EQ(out.result.images[0].format, ImageFormat::kPng);
  EXPECT_EQ(out.result.images[4].format, ImageFormat::kWebp);
  EXPECT_EQ(out.result.skipped, 0u);
}

class IngestTarKinds : public testing::TestWithParam<Kind> {};

TEST_P(IngestTarKinds, CompressedTarsReadLikeZip) {
  Sandbox s;
  auto out = s.run_archive(GetParam(), nested_photos());
  ASSERT_EQ(out.error, "");
  EXPECT_EQ(out.result.images.size(), 5u);
  EXPECT_GT(out.result.unpacked_bytes, 1000u);
}
std::string kind_name(const testing::TestParamInfo<Kind>& param) {
  static const char* const kNames[] = {"zip", "tar", "tar_gz", "tar_zst", "tar_bz2", "tar_xz"};
  return kNames[static_cast<int>(param.param)];
}
INSTANTIATE_TEST_SUITE_P(All, IngestTarKinds,
                         testing::Values(Kind::kTar, Kind::kTarGz, Kind::kTarZst, Kind::kTarBz2, Kind::kTarXz), kind_name);

TEST(IngestCorpus, DuplicateBaseNamesStayApart) {
  Sandbox s;
  std::string a = jpeg(10, 10, 1), b = jpeg(12, 12, 2);
  auto out = s.run_archive(Kind::kZip, {file("a/img.jpg", a), file("b/img.jpg", b)});
  ASSERT_EQ(out.error, "");
  ASSERT_EQ(names(out.result), (std::vector<std::string>{"a/img.jpg", "b/img.jpg"}));
  EXPECT_NE(out.result.images[0].path, out.result.images[1].path);
  EXPECT_EQ(out.result.images[0].bytes, a.size());
  EXPECT_EQ(out.result.images[1].bytes, b.size());
}

TEST(IngestCorpus, PathTraversalIsRefused) {
  Sandbox s;
  auto out = s.run_archive(Kind::kTar, {file("ok.jpg", jpeg(8, 8)), file("../../outside/evil.jpg", jpeg(8, 8))});
  EXPECT_CONTAINS(out.error, "'../../outside/evil.jpg' has a '..' part");
}

TEST(IngestCorpus, BackslashTraversalFromWindowsToolsIsRefused) {
  Sandbox s;
  auto out = s.run_archive(Kind::kZip, {file("a\\..\\..\\outside\\evil.jpg", jpeg(8, 8))});
  EXPECT_CONTAINS(out.error, "has a '..' part");
}

TEST(IngestCorpus, AbsolutePathIsRefused) {
  Sandbox s;
  auto out = s.run_archive(Kind::kTar, {file(s.path("outside/evil.jpg"), jpeg(8, 8))});
  EXPECT_CONTAINS(out.error, "has an absolute path");
}

TEST(IngestCorpus, DriveLetterIsRefused) {
  Sandbox s;
  auto out = s.run_archive(Kind::kZip, {file("C:/Users/x/evil.jpg", jpeg(8, 8))});
  EXPECT_CONTAINS(out.error, "starts with a drive letter");
}

TEST(IngestCorpus, SymlinksAreNeverCreatedOrFollowed) {
  Sandbox s;
  // The classic: a link to a folder outside, then a file "through" the link.
  auto out = s.run_archive(Kind::kTar, {symlink("link", s.path("outside")), file("link/evil.jpg", jpeg(8, 8)),
                                        symlink("pic.jpg", "/etc/passwd")});
  ASSERT_EQ(out.error, "");
  EXPECT_CONTAINS(out.warnings, "skipping 'link': a symbolic link");
  EXPECT_CONTAINS(out.warnings, "skipping 'pic.jpg': a symbolic link (to '/etc/passwd')");
  // "link/evil.jpg" is just a name: extracted into the work folder like any other image.
  EXPECT_EQ(names(out.result), std::vector<std::string>{"link/evil.jpg"});
  EXPECT_EQ(out.result.skipped, 2u);
}

TEST(IngestCorpus, HardLinksAreSkipped) {
  Sandbox s;
  auto out = s.run_archive(Kind::kTar, {file("a.jpg", jpeg(8, 8)), hardlink("b.jpg", "a.jpg"), hardlink("c.jpg", "/etc/shadow")});
  ASSERT_EQ(out.error, "");
  EXPECT_EQ(names(out.result), std::vector<std::string>{"a.jpg"});
  EXPECT_CONTAINS(out.warnings, "skipping 'c.jpg': a hard link (to '/etc/shadow')");
}

TEST(IngestCorpus, DevicesAreSkipped) {
  Sandbox s;
  auto out = s.run_archive(Kind::kTar, {char_device("null.jpg"), file("a.jpg", jpeg(8, 8))});
  ASSERT_EQ(out.error, "");
  EXPECT_EQ(names(out.result), std::vector<std::string>{"a.jpg"});
  EXPECT_CONTAINS(out.warnings, "'null.jpg': not a regular file");
}

TEST(IngestCorpus, ZipBombStopsAtTheUnpackedLimit) {
  Sandbox s;
  // 64 MiB that starts like a PNG and compresses to about 64 KiB.
  std::string bomb = "\x89PNG\r\n\x1A\n" + std::string((64u << 20) - 8, '\0');
  IngestLimits limits;
  limits.max_unpacked_bytes = 8u << 20;
  auto out = s.run_archive(Kind::kZip, {file("small.png", png(8, 8)), file("bomb.png", bomb)}, limits);
  EXPECT_CONTAINS(out.error, "bytes unpacked by entry 'bomb.png' (a zip bomb");
}

TEST(IngestCorpus, OversizedFileStopsAtTheFileLimit) {
  Sandbox s;
  std::string big = "\xFF\xD8\xFF\xE0" + std::string(3u << 20, 'x');
  IngestLimits limits;
  limits.max_file_bytes = 1u << 20;
  auto out = s.run_archive(Kind::kTarGz, {file("big.jpg", big)}, limits);
  EXPECT_CONTAINS(out.error, "entry 'big.jpg' is larger than 1048576 bytes (--max_file_bytes)");
}

TEST(IngestCorpus, TooManyEntriesIsAnError) {
  Sandbox s;
  std::vector<Entry> entries;
  for (int i = 0; i < 150; ++i) entries.push_back(file("n/" + std::to_string(i) + ".txt", "x"));
  IngestLimits limits;
  limits.max_entries = 100;
  auto out = s.run_archive(Kind::kZip, entries, limits);
  EXPECT_CONTAINS(out.error, "more than 100 entries");
  EXPECT_CONTAINS(out.error, "--max_entries");
}

TEST(IngestCorpus, TruncatedTarGzIsAnError) {
  Sandbox s;
  std::string full = s.path("full.tgz");
  write_archive(full, Kind::kTarGz, {file("a.png", png(300, 300, 1)), file("b.png", png(300, 300, 2))});
  std::string bytes = read_file(full);
  write_file(s.path("cut.tgz"), bytes.substr(0, bytes.size() * 2 / 3));
  auto out = s.run(s.path("cut.tgz"));
  EXPECT_CONTAINS(out.error, "truncated or corrupt");
}

TEST(IngestCorpus, TruncatedZipIsAnError) {
  Sandbox s;
  std::string full = s.path("full.zip");
  write_archive(full, Kind::kZip, {file("a.png", png(300, 300, 1)), file("b.png", png(300, 300, 2))});
  std::string bytes = read_file(full);
  write_file(s.path("cut.zip"), bytes.substr(0, bytes.size() / 2));
  auto out = s.run(s.path("cut.zip"));
  EXPECT_NE(out.error, "") << "a zip cut in half must not pass";
}

TEST(IngestCorpus, PasswordProtectedZipIsAClearError) {
  Sandbox s;
  std::string input = s.path("secret.zip");
  write_archive(input, Kind::kZip, {file("a.jpg", jpeg(8, 8))}, "hunter2");
  auto out = s.run(input);
  EXPECT_CONTAINS(out.error, "entry 'a.jpg' is encrypted (a password-protected archive)");
}

TEST(IngestCorpus, EmptyArchiveHasNoImages) {
  Sandbox s;
  auto zip = s.run_archive(Kind::kZip, {});
  EXPECT_EQ(zip.error, "");
  EXPECT_TRUE(zip.result.images.empty());
  auto tar = s.run_archive(Kind::kTar, {});
  EXPECT_EQ(tar.error, "");
  EXPECT_TRUE(tar.result.images.empty());
}

TEST(IngestCorpus, ArchiveWithoutImagesHasNoImages) {
  Sandbox s;
  auto out = s.run_archive(Kind::kZip, {file("readme.md", "# hi"), file("notes/list.txt", "x"), file("data.bin", "\x01\x02")});
  EXPECT_EQ(out.error, "");
  EXPECT_TRUE(out.result.images.empty());
  EXPECT_EQ(out.result.sidecars.size(), 1u);
}

TEST(IngestCorpus, ZeroByteInputIsNotAnArchive) {
  Sandbox s;
  write_file(s.path("empty.zip"), "");
  auto out = s.run(s.path("empty.zip"));
  // libarchive reads an empty file as an empty archive; either way there is nothing in it.
  if (out.error.empty()) EXPECT_TRUE(out.result.images.empty());
  else EXPECT_CONTAINS(out.error, "not a zip or tar archive");
}

TEST(IngestCorpus, RandomBytesAreNotAnArchive) {
  Sandbox s;
  std::string junk;
  for (int i = 0; i < 4096; ++i) junk += static_cast<char>((i * 7919 + 13) % 251);
  write_file(s.path("junk.zip"), junk);
  auto out = s.run(s.path("junk.zip"));
  EXPECT_CONTAINS(out.error, "not a zip or tar archive");
}

TEST(IngestCorpus, ZeroByteImageIsSkippedWithAWarning) {
  Sandbox s;
  auto out = s.run_archive(Kind::kZip, {file("empty.jpg", ""), file("ok.jpg", jpeg(8, 8))});
  ASSERT_EQ(out.error, "");
  EXPECT_EQ(names(out.result), std::vector<std::string>{"ok.jpg"});
  EXPECT_CONTAINS(out.warnings, "skipping 'empty.jpg': empty file");
}

TEST(IngestCorpus, NonImageWithImageExtensionIsSkippedWithAWarning) {
  Sandbox s;
  auto out = s.run_archive(Kind::kZip, {file("fake.jpg", "<html>not a photo</html>"), file("ok.png", png(8, 8))});
  ASSERT_EQ(out.error, "");
  EXPECT_EQ(names(out.result), std::vector<std::string>{"ok.png"});
  EXPECT_CONTAINS(out.warnings, "skipping 'fake.jpg': not a recognised image (content starts 0x3c68746d6c3e6e6f)");
}

TEST(IngestCorpus, ImagesAreRecognisedByContentNotName) {
  Sandbox s;
  auto out = s.run_archive(Kind::kZip, {file("photo.dat", png(8, 8)), file("IMG_0001", jpeg(8, 8)), file("x.JPG", png(8, 8))});
  ASSERT_EQ(out.error, "");
  ASSERT_EQ(names(out.result), (std::vector<std::string>{"IMG_0001", "photo.dat", "x.JPG"}));
  EXPECT_EQ(out.result.images[0].format, ImageFormat::kJpeg);
  EXPECT_EQ(out.result.images[2].format, ImageFormat::kPng);
}

TEST(IngestCorpus, MacosxMetadataAndHiddenFilesAreSkipped) {
  Sandbox s;
  auto out = s.run_archive(Kind::kZip, {file("__MACOSX/._a.jpg", jpeg(8, 8)), file("__MACOSX/set/b.jpg", jpeg(8, 8)),
                                        file("._a.jpg", jpeg(8, 8)), file(".hidden/c.jpg", jpeg(8, 8)),
                                        file(".DS_Store", "Bud1"), file("set/.d.jpg", jpeg(8, 8)), file("a.jpg", jpeg(8, 8))});
  ASSERT_EQ(out.error, "");
  EXPECT_EQ(names(out.result), std::vector<std::string>{"a.jpg"});
  EXPECT_EQ(out.result.skipped, 6u);
  EXPECT_EQ(out.warnings.find(" W] "), std::string::npos) << "macOS metadata and hidden files are skipped quietly";
}

TEST(IngestCorpus, UnicodeNamesAreKept) {
  Sandbox s;
  auto out = s.run_archive(Kind::kZip, {file("фото/café 📷.jpg", jpeg(8, 8)), file("写真.png", png(8, 8))});
  ASSERT_EQ(out.error, "");
  EXPECT_EQ(names(out.result), (std::vector<std::string>{"фото/café 📷.jpg", "写真.png"}));
}

TEST(IngestCorpus, GifAndHeicAreNamedAndSkipped) {
  Sandbox s;
  std::string heic("\0\0\0\x18" "ftypheic\0\0\0\0mif1heic", 24);
  auto out = s.run_archive(Kind::kZip, {file("anim.gif", "GIF89a\x01\0\x01\0\0\0\0;"), file("iphone.HEIC", heic),
                                        file("ok.jpg", jpeg(8, 8))});
  ASSERT_EQ(out.error, "");
  EXPECT_EQ(names(out.result), std::vector<std::string>{"ok.jpg"});
  EXPECT_CONTAINS(out.warnings, "'anim.gif': a GIF image, which xltune does not decode");
  EXPECT_CONTAINS(out.warnings, "'iphone.HEIC': a HEIC/HEIF/AVIF image");
}

TEST(IngestCorpus, CaptionFilesAreCollected) {
  Sandbox s;
  auto out = s.run_archive(Kind::kZip, {file("caption.csv", "image_file,caption\na.jpg,hi\n"), file("sub/captions.csv", "x"),
                                        file("a.jpg", jpeg(8, 8)), file("a.txt", "a photo of TOK"),
                                        file("labels.csv", "x,y")});
  ASSERT_EQ(out.error, "");
  ASSERT_EQ(out.result.caption_csvs.size(), 2u);
  EXPECT_EQ(out.result.caption_csvs[0].name, "caption.csv");
  EXPECT_EQ(out.result.caption_csvs[1].name, "sub/captions.csv");
  ASSERT_EQ(out.result.sidecars.size(), 1u);
  EXPECT_EQ(out.result.sidecars[0].text, "a photo of TOK");
  EXPECT_CONTAINS(out.warnings, "skipping 'labels.csv': a CSV file not named *caption*.csv");
}

TEST(IngestCorpus, TarWithOnePathTwiceKeepsTheLaterOne) {
  Sandbox s;
  std::string later = jpeg(16, 16, 3);
  auto out = s.run_archive(Kind::kTar, {file("a.jpg", jpeg(8, 8)), file("./a.jpg", later)});
  ASSERT_EQ(out.error, "");
  ASSERT_EQ(names(out.result), std::vector<std::string>{"a.jpg"});
  EXPECT_EQ(out.result.images[0].bytes, later.size());
  EXPECT_CONTAINS(out.warnings, "'a.jpg' appears twice");
}

// Non-ASCII names as the tools people use write them (Note [Entry names whatever the locale]):
// Python's zipfile and Windows set the UTF-8 flag; old tools write code page 437 without it;
// Info-ZIP on Linux writes UTF-8 bytes without it; tar (pax) has UTF-8 names. Each must ingest
// under every process locale, the C locale of a batch job included.
class IngestNonAsciiNames : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    previous_ = std::setlocale(LC_ALL, nullptr);
    // C and POSIX exist everywhere; C.UTF-8 is built into glibc since 2.35 (Debian 12 has 2.36).
    ASSERT_NE(std::setlocale(LC_ALL, GetParam()), nullptr) << "locale " << GetParam() << " is not available";
  }
  void TearDown() override { std::setlocale(LC_ALL, previous_.c_str()); }
  std::string previous_;
};

TEST_P(IngestNonAsciiNames, ZipWithTheUtf8FlagAsPythonWritesIt) {
  Sandbox s;
  write_file(s.path("flag.zip"), stored_zip({{"café.png", png(8, 8)}, {"名前.jpg", jpeg(8, 8)}}, /*utf8_flag=*/true));
  auto out = s.run(s.path("flag.zip"));
  ASSERT_EQ(out.error, "");
  EXPECT_EQ(names(out.result), (std::vector<std::string>{"café.png", "名前.jpg"}));
}

TEST_P(IngestNonAsciiNames, ZipWithoutTheFlagInCodePage437) {
  Sandbox s;
  // "café.png" and "Ñandú.jpg" in CP437: é = 0x82, Ñ = 0xA5, ú = 0xA3.
  write_file(s.path("cp437.zip"), stored_zip({{"caf\x82.png", png(8, 8)}, {"\xA5" "and\xA3.jpg", jpeg(8, 8)}}, false));
  auto out = s.run(s.path("cp437.zip"));
  ASSERT_EQ(out.error, "");
  EXPECT_EQ(names(out.result), (std::vector<std::string>{"café.png", "Ñandú.jpg"}));
}

TEST_P(IngestNonAsciiNames, ZipWithoutTheFlagInUtf8) {
  Sandbox s;
  write_file(s.path("raw.zip"), stored_zip({{"фото/名前.png", png(8, 8)}}, false));
  auto out = s.run(s.path("raw.zip"));
  ASSERT_EQ(out.error, "");
  EXPECT_EQ(names(out.result), std::vector<std::string>{"фото/名前.png"});
}

TEST_P(IngestNonAsciiNames, TarAndFolder) {
  Sandbox s;
  auto out = s.run_archive(Kind::kTar, {file("café.png", png(8, 8)), file("名前.jpg", jpeg(8, 8))});
  ASSERT_EQ(out.error, "");
  EXPECT_EQ(names(out.result), (std::vector<std::string>{"café.png", "名前.jpg"}));
  ::mkdir(s.path("photos").c_str(), 0755);
  write_file(s.path("photos/café.png"), png(8, 8));
  auto folder = s.run(s.path("photos"));
  ASSERT_EQ(folder.error, "");
  EXPECT_EQ(names(folder.result), std::vector<std::string>{"café.png"});
}

INSTANTIATE_TEST_SUITE_P(Locales, IngestNonAsciiNames, ::testing::Values("C", "C.UTF-8", "POSIX"));

TEST(IngestCorpus, InvalidUtf8NamesAreRepaired) {
  Sandbox s;
  auto out = s.run_archive(Kind::kTar, {file("bad\xff\xfename.jpg", jpeg(8, 8))});
  ASSERT_EQ(out.error, "");
  ASSERT_EQ(out.result.images.size(), 1u);
  EXPECT_EQ(out.result.images[0].name, "bad\xEF\xBF\xBD\xEF\xBF\xBDname.jpg");
}

TEST(IngestFolder, NestedFolderIsReadInPlaceWithoutFollowingLinks) {
  Sandbox s;
  std::string in = s.path("photos");
  ::mkdir(in.c_str(), 0755);
  ::mkdir((in + "/a").c_str(), 0755);
  ::mkdir((in + "/.git").c_str(), 0755);
  write_file(in + "/a/one.jpg", jpeg(8, 8));
  write_file(in + "/two.png", png(8, 8));
  write_file(in + "/.git/x.png", png(8, 8));
  write_file(in + "/two.txt", "a photo of TOK at sea");
  write_file(s.path("outside/secret.jpg"), jpeg(8, 8));
  ASSERT_EQ(::symlink(s.path("outside").c_str(), (in + "/escape").c_str()), 0);
  ASSERT_EQ(::symlink(s.path("outside/secret.jpg").c_str(), (in + "/secret.jpg").c_str()), 0);
  ::mkfifo((in + "/pipe.jpg").c_str(), 0644);

  Sandbox::Outcome out;
  {
    // The outside folder holds a file on purpose here; check the rest by hand.
    testing::internal::CaptureStderr();
    WorkDir work(s.path("work"), "wd-");
    out.result = ingest(in, work);
    out.warnings = testing::internal::GetCapturedStderr();
    EXPECT_EQ(tree(work.path()), std::vector<std::string>{}) << "folder images are read in place, not copied";
  }
  EXPECT_EQ(names(out.result), (std::vector<std::string>{"a/one.jpg", "two.png"}));
  EXPECT_EQ(out.result.images[1].path, in + "/two.png");
  EXPECT_CONTAINS(out.warnings, "skipping 'escape': a symbolic link");
  EXPECT_CONTAINS(out.warnings, "skipping 'secret.jpg': a symbolic link");
  EXPECT_CONTAINS(out.warnings, "skipping 'pipe.jpg': not a regular file");
  ASSERT_EQ(out.result.sidecars.size(), 1u);
  EXPECT_EQ(out.result.sidecars[0].name, "two.txt");
}

TEST(IngestInput, MissingInputIsAnErrorNamingIt) {
  Sandbox s;
  auto out = s.run(s.path("nope.zip"));
  EXPECT_CONTAINS(out.error, "--input_images " + s.path("nope.zip") + ": cannot access");
}

TEST(IngestInput, DeviceInputIsRefused) {
  Sandbox s;
  auto out = s.run("/dev/null");
  EXPECT_CONTAINS(out.error, "expected a .zip or .tar archive or a folder");
}

}  // namespace
}  // namespace xltune
