// Decode: each kind of image a user uploads, and each broken one, ends in the right RGB pixels
// or one clear error naming the image. Images are made here with OpenCV (and a CMYK JPEG made
// once with PIL, embedded below, since OpenCV cannot write CMYK).
#include "data/image_decode.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "core/error.h"
#include "data/exif_orientation.h"
#include "data_test_util.h"
#include "test_util.h"

namespace xltune {
namespace {

using namespace data_testing;

std::string error_of(const std::string& bytes, const DecodeLimits& limits = {}) {
  try {
    decode_image(bytes, "test.img", limits);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

cv::Vec3b rgb(const cv::Mat& m, int x, int y) { return m.at<cv::Vec3b>(y, x); }

void expect_near(cv::Vec3b got, cv::Vec3b want, int tolerance, const std::string& where) {
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(got[c], want[c], tolerance) << where << " channel " << c;
}

uint32_t crc32(const std::string& bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char b : bytes) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}
std::string be32(uint32_t v) { return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; }
std::string png_chunk(const std::string& type, const std::string& data) {
  return be32(static_cast<uint32_t>(data.size())) + type + data + be32(crc32(type + data));
}

// A big-endian TIFF block holding only the orientation tag.
std::string exif_tiff(int orientation) {
  std::string t("MM\0*\0\0\0\x08", 8);
  t += std::string("\0\x01", 2);                                  // one entry
  t += std::string("\x01\x12\0\x03\0\0\0\x01", 8);                // tag 274, SHORT, count 1
  t += std::string({0, static_cast<char>(orientation), 0, 0});    // value, left-justified
  t += std::string(4, '\0');                                      // no next IFD
  return t;
}

std::string jpeg_with_orientation(const std::string& jpeg_bytes, int orientation) {
  std::string app1 = std::string("Exif\0\0", 6) + exif_tiff(orientation);
  std::string segment = "\xFF\xE1" + std::string({char((app1.size() + 2) >> 8), char((app1.size() + 2) & 0xFF)}) + app1;
  return jpeg_bytes.substr(0, 2) + segment + jpeg_bytes.substr(2);
}

std::string png_with_orientation(const std::string& png_bytes, int orientation) {
  const size_t after_ihdr = 8 + 25;
  return png_bytes.substr(0, after_ihdr) + png_chunk("eXIf", exif_tiff(orientation)) + png_bytes.substr(after_ihdr);
}

// OpenCV writes a simple lossless WebP ("RIFF....WEBPVP8L"); EXIF needs the extended form:
// VP8X (with the EXIF flag) + the VP8L chunk + an EXIF chunk.
std::string webp_with_orientation(const std::string& webp_bytes, int orientation, int width, int height) {
  std::string vp8l = webp_bytes.substr(12);  // the whole VP8L chunk with its header
  std::string vp8x = std::string("VP8X") + le32(10) + std::string(1, '\x08') + std::string(3, '\0') +
                     le32(static_cast<uint32_t>(width - 1)).substr(0, 3) + le32(static_cast<uint32_t>(height - 1)).substr(0, 3);
  std::string exif = exif_tiff(orientation);
  std::string exif_chunk = "EXIF" + le32(static_cast<uint32_t>(exif.size())) + exif + (exif.size() % 2 ? std::string(1, '\0') : "");
  std::string body = "WEBP" + vp8x + vp8l + exif_chunk;
  return "RIFF" + le32(static_cast<uint32_t>(body.size())) + body;
}

// 24x16, corners (BGR storage): top-left red, top-right green, bottom-left blue, bottom-right white.
cv::Mat quadrants(int w = 24, int h = 16) {
  cv::Mat m(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      bool right = x >= w / 2, bottom = y >= h / 2;
      m.at<cv::Vec3b>(y, x) = !bottom ? (right ? cv::Vec3b(0, 255, 0) : cv::Vec3b(0, 0, 255))
                                      : (right ? cv::Vec3b(255, 255, 255) : cv::Vec3b(255, 0, 0));
    }
  return m;
}

const cv::Vec3b kRed(255, 0, 0), kGreen(0, 255, 0), kBlue(0, 0, 255), kWhite(255, 255, 255);

// Displayed corners (TL, TR, BL, BR) for each EXIF orientation of the quadrants image, from
// the EXIF definitions (e.g. 6: the stored top row is the displayed right column).
struct Corners {
  cv::Vec3b tl, tr, bl, br;
  bool swapped;
};
const Corners kExpected[9] = {
    {},
    {kRed, kGreen, kBlue, kWhite, false},  // 1
    {kGreen, kRed, kWhite, kBlue, false},  // 2 mirror horizontal
    {kWhite, kBlue, kGreen, kRed, false},  // 3 rotate 180
    {kBlue, kWhite, kRed, kGreen, false},  // 4 mirror vertical
    {kRed, kBlue, kGreen, kWhite, true},   // 5 transpose
    {kBlue, kRed, kWhite, kGreen, true},   // 6 rotate 90 clockwise
    {kWhite, kGreen, kBlue, kRed, true},   // 7 transverse
    {kGreen, kWhite, kRed, kBlue, true},   // 8 rotate 90 counter-clockwise
};

void expect_corners(const DecodedImage& d, int orientation, int tolerance, const std::string& what) {
  const Corners& c = kExpected[orientation];
  const cv::Mat& m = d.rgb;
  SCOPED_TRACE(what + " orientation " + std::to_string(orientation));
  EXPECT_EQ(d.orientation, orientation);
  ASSERT_EQ(m.cols, c.swapped ? 16 : 24);
  ASSERT_EQ(m.rows, c.swapped ? 24 : 16);
  const int r = m.cols - 3, b = m.rows - 3;
  expect_near(rgb(m, 2, 2), c.tl, tolerance, "top-left");
  expect_near(rgb(m, r, 2), c.tr, tolerance, "top-right");
  expect_near(rgb(m, 2, b), c.bl, tolerance, "bottom-left");
  expect_near(rgb(m, r, b), c.br, tolerance, "bottom-right");
}

TEST(ImageDecode, ExifOrientationOfJpegIsApplied) {
  std::string base = encode(".jpg", quadrants(), {cv::IMWRITE_JPEG_QUALITY, 100});
  for (int o = 1; o <= 8; ++o) expect_corners(decode_image(jpeg_with_orientation(base, o), "t.jpg"), o, 40, "JPEG");
}

TEST(ImageDecode, ExifOrientationOfPngIsApplied) {
  std::string base = encode(".png", quadrants());
  for (int o = 1; o <= 8; ++o) expect_corners(decode_image(png_with_orientation(base, o), "t.png"), o, 0, "PNG");
}

TEST(ImageDecode, ExifOrientationOfWebpIsApplied) {
  // OpenCV's IMREAD_COLOR ignores WebP's EXIF; xltune does not.
  std::string base = encode(".webp", quadrants(), {cv::IMWRITE_WEBP_QUALITY, 101});
  ASSERT_EQ(base.substr(12, 4), "VP8L");
  for (int o = 1; o <= 8; ++o) expect_corners(decode_image(webp_with_orientation(base, o, 24, 16), "t.webp"), o, 0, "WebP");
}

TEST(ImageDecode, MalformedExifMeansUpright) {
  std::string base = encode(".png", quadrants());
  std::string bad = base.substr(0, 33) + png_chunk("eXIf", "MM\0*\xFF\xFF\xFF\xFF") + base.substr(33);
  expect_corners(decode_image(bad, "t.png"), 1, 0, "bad EXIF");
  EXPECT_EQ(exif_orientation(jpeg_with_orientation(encode(".jpg", quadrants()), 9), ImageFormat::kJpeg), 1);
}

TEST(ImageDecode, CmykJpegBecomesRgb) {
  DecodedImage d = decode_image(kCmykJpeg, "cmyk.jpg");
  ASSERT_EQ(d.rgb.cols, 16);
  expect_near(rgb(d.rgb, 2, 2), kRed, 8, "red");
  expect_near(rgb(d.rgb, 13, 2), kGreen, 8, "green");
  expect_near(rgb(d.rgb, 2, 13), kBlue, 8, "blue");
  expect_near(rgb(d.rgb, 13, 13), kWhite, 8, "white");
}

TEST(ImageDecode, SixteenBitPngKeepsItsFullRange) {
  cv::Mat m(2, 3, CV_16UC3);
  m.at<cv::Vec3w>(0, 0) = {0, 1000, 65535};  // BGR
  m.at<cv::Vec3w>(0, 1) = {257 * 100, 257 * 200, 128};
  m.at<cv::Vec3w>(0, 2) = {65535, 65535, 65535};
  m.at<cv::Vec3w>(1, 0) = m.at<cv::Vec3w>(1, 1) = m.at<cv::Vec3w>(1, 2) = {0, 0, 0};
  DecodedImage d = decode_image(encode(".png", m), "deep.png");
  EXPECT_EQ(rgb(d.rgb, 0, 0), cv::Vec3b(255, 4, 0));  // 1000/257 = 3.9 -> 4
  EXPECT_EQ(rgb(d.rgb, 1, 0), cv::Vec3b(0, 200, 100));
  EXPECT_EQ(rgb(d.rgb, 2, 0), cv::Vec3b(255, 255, 255));
}

TEST(ImageDecode, AlphaIsCompositedOnWhite) {
  cv::Mat m(1, 4, CV_8UC4);
  m.at<cv::Vec4b>(0, 0) = {0, 0, 255, 0};    // transparent red -> white
  m.at<cv::Vec4b>(0, 1) = {0, 0, 255, 255};  // opaque red
  m.at<cv::Vec4b>(0, 2) = {0, 0, 255, 128};  // half red over white
  m.at<cv::Vec4b>(0, 3) = {0, 0, 0, 0};      // transparent black -> white (PIL would give black)
  DecodedImage d = decode_image(encode(".png", m), "alpha.png");
  EXPECT_EQ(rgb(d.rgb, 0, 0), kWhite);
  EXPECT_EQ(rgb(d.rgb, 1, 0), kRed);
  EXPECT_EQ(rgb(d.rgb, 2, 0), cv::Vec3b(255, 127, 127));
  EXPECT_EQ(rgb(d.rgb, 3, 0), kWhite);
}

TEST(ImageDecode, GreyBecomesRgb) {
  cv::Mat grey(5, 7, CV_8UC1, cv::Scalar(77));
  for (const char* ext : {".png", ".jpg"}) {
    DecodedImage d = decode_image(encode(ext, grey), std::string("grey") + ext);
    ASSERT_EQ(d.rgb.type(), CV_8UC3) << ext;
    EXPECT_EQ(rgb(d.rgb, 3, 2), cv::Vec3b(77, 77, 77)) << ext;
  }
}

TEST(ImageDecode, EveryFormatDecodes) {
  cv::Mat q = quadrants();
  for (const char* ext : {".png", ".bmp", ".tiff", ".webp", ".jpg"}) {
    std::vector<int> params;
    if (std::string(ext) == ".webp") params = {cv::IMWRITE_WEBP_QUALITY, 101};
    DecodedImage d = decode_image(encode(ext, q, params), std::string("q") + ext);
    expect_corners(d, 1, std::string(ext) == ".jpg" ? 40 : 0, ext);
  }
}

TEST(ImageDecode, OnePixelImageDecodes) {
  cv::Mat one(1, 1, CV_8UC3, cv::Scalar(10, 20, 30));
  DecodedImage d = decode_image(encode(".png", one), "one.png");
  EXPECT_EQ(d.rgb.size(), cv::Size(1, 1));
  EXPECT_EQ(rgb(d.rgb, 0, 0), cv::Vec3b(30, 20, 10));
}

TEST(ImageDecode, HugePngHeaderIsRefusedBeforeDecoding) {
  // 20000x20000 RGB would be 1.2 GB; the file is 57 bytes.
  std::string ihdr = be32(20000) + be32(20000) + std::string("\x08\x02\0\0\0", 5);
  std::string bomb = std::string("\x89PNG\r\n\x1A\n", 8) + png_chunk("IHDR", ihdr) + png_chunk("IEND", "");
  std::string e = error_of(bomb);
  EXPECT_CONTAINS(e, "20000x20000 is 400000000 pixels, above the limit of 134217728 (--max_image_pixels); refused before decoding");
}

TEST(ImageDecode, HugeJpegHeaderIsRefusedBeforeDecoding) {
  std::string j = jpeg(16, 16);
  size_t sof = j.find("\xFF\xC0");
  ASSERT_NE(sof, std::string::npos);
  j[sof + 5] = char(20000 >> 8), j[sof + 6] = char(20000 & 0xFF);  // height
  j[sof + 7] = char(20000 >> 8), j[sof + 8] = char(20000 & 0xFF);  // width
  EXPECT_CONTAINS(error_of(j), "20000x20000 is 400000000 pixels");
  DecodeLimits tight;
  tight.max_image_pixels = 100;
  EXPECT_CONTAINS(error_of(jpeg(16, 16), tight), "16x16 is 256 pixels, above the limit of 100");
}

TEST(ImageDecode, TruncatedJpegIsAnError) {
  std::string j = jpeg(200, 150);
  EXPECT_CONTAINS(error_of(j.substr(0, j.size() * 6 / 10)), "JPEG is truncated");
  EXPECT_CONTAINS(error_of(j.substr(0, 100)), "test.img: JPEG");
}

TEST(ImageDecode, TruncatedPngIsAnError) {
  std::string p = png(200, 150);
  EXPECT_CONTAINS(error_of(p.substr(0, p.size() * 6 / 10)), "test.img: cannot decode this PNG");
  EXPECT_CONTAINS(error_of(p.substr(0, 20)), "PNG does not start with an IHDR chunk");
}

TEST(ImageDecode, EmptyAndNonImageBytesAreErrors) {
  EXPECT_CONTAINS(error_of(""), "test.img: empty file");
  EXPECT_CONTAINS(error_of("hello, world"), "test.img: unknown is not a format xltune decodes");
  EXPECT_CONTAINS(error_of("GIF89a\x01\0\x01\0\0\0\0;"), "GIF is not a format xltune decodes");
}

TEST(ImageDecode, CorruptJpegSegmentIsAnError) {
  std::string j = jpeg(16, 16);
  j[4] = '\x7F', j[5] = '\x7F';  // the first segment claims 32 KB
  EXPECT_CONTAINS(error_of(j), "runs past the end of the file");
}

TEST(ImageDecode, FilesAreNotReadThroughSymlinks) {
  TempDir temp("decode");
  const std::string& d = temp.path();
  write_file(d + "/real.png", png(4, 4));
  ASSERT_EQ(::symlink((d + "/real.png").c_str(), (d + "/link.png").c_str()), 0);
  EXPECT_EQ(decode_image_file(d + "/real.png", "real.png").rgb.cols, 4);
  EXPECT_THAT([&] { decode_image_file(d + "/link.png", "link.png"); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("image link.png: cannot open")))
      << "a symlink was followed";
}

TEST(ImageDecode, FileSizeLimitIsCheckedBeforeReading) {
  TempDir temp("decode");
  const std::string& d = temp.path();
  write_file(d + "/big.png", png(64, 64));
  DecodeLimits tight;
  tight.max_file_bytes = 10;
  EXPECT_THAT([&] { decode_image_file(d + "/big.png", "big.png", tight); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("above the limit of 10 bytes")));
}

}  // namespace
}  // namespace xltune
