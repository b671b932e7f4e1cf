// The decoders and the PNG encoder (data/image_codec.h, data/bmp_decode.h) without OpenCV's
// imgcodecs (Note [Image codecs]):
//  - every kind of file OpenCV's encoders write decodes to exactly the pixels cv::imdecode gives
//    (what xltune decoded before), and so do the PNG and TIFF layouts OpenCV cannot write (made
//    here with libpng and libtiff), or they decode to pixels worked out by hand;
//  - BMP, read as Pillow reads it, against bytes and pixels written out by hand;
//  - damaged files of every format end in an Error naming the image, never a crash (the ASan
//    build runs this file too);
//  - PNGs written by encode_png read back as the same pixels in OpenCV.
#include "data/image_codec.h"

#include <gtest/gtest.h>
#include <png.h>
#include <tiffio.h>

#include <cstdio>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/error.h"
#include "data/bmp_decode.h"
#include "data/image_decode.h"
#include "data_test_util.h"
#include "test_util.h"

namespace xltune {
namespace {

using namespace data_testing;

constexpr uint64_t kNoLimit = uint64_t{1} << 27;

// Noise with a gradient under it (JPEG's and WebP's lossy paths see both), any depth and channels.
cv::Mat noisy(int width, int height, int type, uint64_t seed) {
  cv::Mat m(height, width, type);
  cv::RNG rng(seed);
  const double top = CV_MAT_DEPTH(type) == CV_16U ? 65536.0 : 256.0;
  rng.fill(m, cv::RNG::UNIFORM, 0.0, top);
  cv::Mat ramp(height, width, type);
  for (int y = 0; y < height; ++y) ramp.row(y).setTo(cv::Scalar::all(top * y / std::max(1, height) / 2));
  cv::addWeighted(m, 0.5, ramp, 1.0, 0.0, m);
  return m;
}

bool same_pixels(const cv::Mat& a, const cv::Mat& b) {
  if (a.type() != b.type() || a.size() != b.size()) return false;
  return cv::norm(a, b, cv::NORM_INF) == 0;
}

struct Case {
  std::string name;
  std::string bytes;
  ImageFormat format;
};

std::string describe(const cv::Mat& m) {
  return std::to_string(m.cols) + "x" + std::to_string(m.rows) + " type " + std::to_string(m.type());
}

void expect_as_opencv(const Case& c) {
  SCOPED_TRACE(c.name);
  cv::Mat want = cv::imdecode(cv::Mat(1, static_cast<int>(c.bytes.size()), CV_8U, const_cast<char*>(c.bytes.data())), cv::IMREAD_UNCHANGED);
  ASSERT_FALSE(want.empty()) << "OpenCV cannot decode the test file";
  cv::Mat got = decode_pixels(c.bytes, c.format, c.name, kNoLimit);
  // OpenCV reads a BMP whose palette is all grey as one channel; decode_bmp gives the same
  // pixels as colour.
  if (c.format == ImageFormat::kBmp && want.channels() == 1) cv::cvtColor(want, want, cv::COLOR_GRAY2BGR);
  EXPECT_TRUE(same_pixels(got, want)) << "xltune " << describe(got) << ", OpenCV " << describe(want)
                                      << (got.type() == want.type() && got.size() == want.size()
                                              ? ", largest difference " + std::to_string(cv::norm(got, want, cv::NORM_INF))
                                              : "");
}

// --- files OpenCV writes ---------------------------------------------------------------------------

std::vector<Case> opencv_corpus() {
  std::vector<Case> out;
  uint64_t seed = 1;
  auto add = [&](const std::string& ext, ImageFormat format, int type, const std::vector<int>& params, const std::string& what) {
    for (cv::Size size : {cv::Size(37, 23), cv::Size(1, 1), cv::Size(64, 48)}) {
      std::string name = what + " " + std::to_string(size.width) + "x" + std::to_string(size.height) + ext;
      out.push_back({name, encode(ext, noisy(size.width, size.height, type, seed++), params), format});
    }
  };
  for (int type : {CV_8UC1, CV_8UC3, CV_8UC4, CV_16UC1, CV_16UC3, CV_16UC4}) {
    add(".png", ImageFormat::kPng, type, {}, "png type " + std::to_string(type));
    add(".png", ImageFormat::kPng, type, {cv::IMWRITE_PNG_COMPRESSION, 9}, "png level 9 type " + std::to_string(type));
    add(".tiff", ImageFormat::kTiff, type, {}, "tiff lzw type " + std::to_string(type));
  }
  add(".tiff", ImageFormat::kTiff, CV_8UC3, {cv::IMWRITE_TIFF_COMPRESSION, 1}, "tiff uncompressed");
  add(".tiff", ImageFormat::kTiff, CV_8UC3, {cv::IMWRITE_TIFF_COMPRESSION, 32773}, "tiff packbits");
  for (int type : {CV_8UC1, CV_8UC3})
    for (int quality : {40, 95})
      for (int progressive : {0, 1})
        add(".jpg", ImageFormat::kJpeg, type, {cv::IMWRITE_JPEG_QUALITY, quality, cv::IMWRITE_JPEG_PROGRESSIVE, progressive},
            "jpeg q" + std::to_string(quality) + (progressive ? " progressive" : "") + " type " + std::to_string(type));
  add(".jpg", ImageFormat::kJpeg, CV_8UC3, {cv::IMWRITE_JPEG_RST_INTERVAL, 2}, "jpeg restart markers");
  add(".jpg", ImageFormat::kJpeg, CV_8UC3, {cv::IMWRITE_JPEG_OPTIMIZE, 1}, "jpeg optimised tables");
  for (int type : {CV_8UC3, CV_8UC4})
    for (int quality : {80, 101}) add(".webp", ImageFormat::kWebp, type, {cv::IMWRITE_WEBP_QUALITY, quality}, "webp q" + std::to_string(quality));
  for (int type : {CV_8UC1, CV_8UC3}) add(".bmp", ImageFormat::kBmp, type, {}, "bmp type " + std::to_string(type));
  out.push_back({"adobe cmyk.jpg", kCmykJpeg, ImageFormat::kJpeg});
  return out;
}

TEST(ImageCodec, EveryFileOpenCvWritesDecodesAsOpenCvDecodesIt) {
  for (const Case& c : opencv_corpus()) expect_as_opencv(c);
}

// --- PNG layouts OpenCV cannot write ---------------------------------------------------------------

struct PngSpec {
  int width = 5, height = 4, color = PNG_COLOR_TYPE_RGB, depth = 8;
  bool interlaced = false;
  std::vector<png_color> palette;
  std::vector<png_byte> palette_alpha;  // tRNS for a palette
  bool colour_key = false;              // tRNS for grey or RGB: sample value 7 (grey) or (7, 7, 7)
};

void png_abort(png_structp, png_const_charp message) {
  std::fprintf(stderr, "libpng in the test: %s\n", message);
  std::abort();
}
void png_append(png_structp png, png_bytep data, size_t size) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<char*>(data), size);
}

// Rows of packed samples as PNG stores them, filled with values derived from the position.
std::string write_png(const PngSpec& s) {
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, png_abort, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(png, &out, png_append, nullptr);
  png_set_IHDR(png, info, s.width, s.height, s.depth, s.color, s.interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!s.palette.empty()) png_set_PLTE(png, info, s.palette.data(), static_cast<int>(s.palette.size()));
  if (!s.palette_alpha.empty()) png_set_tRNS(png, info, s.palette_alpha.data(), static_cast<int>(s.palette_alpha.size()), nullptr);
  if (s.colour_key) {
    png_color_16 key{0, 7, 7, 7, 7};
    png_set_tRNS(png, info, nullptr, 0, &key);
  }
  png_write_info(png, info);
  const int channels = s.color == PNG_COLOR_TYPE_RGB ? 3 : s.color == PNG_COLOR_TYPE_RGB_ALPHA ? 4 : s.color == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
  const int row_bytes = (s.width * channels * s.depth + 7) / 8;
  const int levels = s.color == PNG_COLOR_TYPE_PALETTE ? std::min(1 << s.depth, static_cast<int>(s.palette.size())) : 1 << std::min(s.depth, 8);
  const int passes = png_set_interlace_handling(png);
  for (int pass = 0; pass < passes; ++pass)
    for (int y = 0; y < s.height; ++y) {
      std::vector<png_byte> row(row_bytes, 0);
      for (int x = 0; x < s.width; ++x)
        for (int c = 0; c < channels; ++c) {
          const int v = (x * 3 + y * 5 + c * 7) % levels;
          const int bit = (x * channels + c) * s.depth;
          if (s.depth >= 8) row[bit / 8] = static_cast<png_byte>(v);
          else row[bit / 8] |= static_cast<png_byte>(v << (8 - s.depth - bit % 8));
        }
      png_write_row(png, row.data());
    }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

TEST(ImageCodec, PngLayoutsOpenCvCannotWriteDecodeAsOpenCvDecodesThem) {
  std::vector<png_color> palette;
  for (int i = 0; i < 16; ++i) palette.push_back({png_byte(i * 16), png_byte(255 - i * 9), png_byte(i * 5)});
  std::vector<std::pair<std::string, PngSpec>> specs;
  specs.push_back({"palette 4-bit", {7, 5, PNG_COLOR_TYPE_PALETTE, 4, false, palette, {}, false}});
  specs.push_back({"palette 8-bit with alpha", {7, 5, PNG_COLOR_TYPE_PALETTE, 8, false, palette, {0, 128, 255, 30}, false}});
  specs.push_back({"palette 2-bit interlaced", {9, 9, PNG_COLOR_TYPE_PALETTE, 2, true, {palette.begin(), palette.begin() + 4}, {}, false}});
  specs.push_back({"grey 1-bit", {13, 3, PNG_COLOR_TYPE_GRAY, 1, false, {}, {}, false}});
  specs.push_back({"grey 4-bit", {13, 3, PNG_COLOR_TYPE_GRAY, 4, false, {}, {}, false}});
  specs.push_back({"grey with a colour key", {6, 4, PNG_COLOR_TYPE_GRAY, 8, false, {}, {}, true}});
  specs.push_back({"grey + alpha", {6, 4, PNG_COLOR_TYPE_GRAY_ALPHA, 8, false, {}, {}, false}});
  specs.push_back({"grey + alpha 16-bit", {6, 4, PNG_COLOR_TYPE_GRAY_ALPHA, 16, false, {}, {}, false}});
  specs.push_back({"rgb with a colour key", {6, 4, PNG_COLOR_TYPE_RGB, 8, false, {}, {}, true}});
  specs.push_back({"rgb interlaced", {11, 10, PNG_COLOR_TYPE_RGB, 8, true, {}, {}, false}});
  specs.push_back({"rgba 16-bit interlaced", {11, 10, PNG_COLOR_TYPE_RGB_ALPHA, 16, true, {}, {}, false}});
  for (const auto& [what, spec] : specs) expect_as_opencv({what + ".png", write_png(spec), ImageFormat::kPng});
}

// --- TIFF layouts, written with libtiff ------------------------------------------------------------

struct TiffSpec {
  int width = 6, height = 5, samples = 3, bits = 8;
  int photometric = PHOTOMETRIC_RGB, planar = PLANARCONFIG_CONTIG, compression = COMPRESSION_NONE;
  int tile = 0;         // tile side (a multiple of 16), 0 for strips
  int orientation = 1;
  int extra = -1;       // EXTRASAMPLE_* of the last sample, -1 for none
  std::vector<uint16_t> colormap;  // 3 * 2^bits entries for a palette
};
TiffSpec tiff_spec(int width, int height, int samples, int bits, int photometric, int compression = COMPRESSION_NONE) {
  TiffSpec s;
  s.width = width, s.height = height, s.samples = samples, s.bits = bits, s.photometric = photometric, s.compression = compression;
  return s;
}
TiffSpec with(TiffSpec s, void (*change)(TiffSpec&)) {
  change(s);
  return s;
}

// Sample (x, y, c) of the test images: any value in 0..2^bits-1.
int tiff_sample(int x, int y, int c, int bits) { return (x * 37 + y * 11 + c * 101 + 3) % (1 << bits); }

std::string write_tiff(const TiffSpec& s, const std::string& dir) {
  const std::string path = dir + "/t.tiff";
  TIFF* t = TIFFOpen(path.c_str(), "w");
  EXPECT_NE(t, nullptr);
  TIFFSetField(t, TIFFTAG_IMAGEWIDTH, s.width);
  TIFFSetField(t, TIFFTAG_IMAGELENGTH, s.height);
  TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, s.samples);
  TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, s.bits);
  TIFFSetField(t, TIFFTAG_PHOTOMETRIC, s.photometric);
  TIFFSetField(t, TIFFTAG_PLANARCONFIG, s.planar);
  TIFFSetField(t, TIFFTAG_COMPRESSION, s.compression);
  TIFFSetField(t, TIFFTAG_ORIENTATION, s.orientation);
  if (s.extra >= 0) {
    uint16_t extra = static_cast<uint16_t>(s.extra);
    TIFFSetField(t, TIFFTAG_EXTRASAMPLES, 1, &extra);
  }
  if (!s.colormap.empty()) {
    const size_t n = s.colormap.size() / 3;
    TIFFSetField(t, TIFFTAG_COLORMAP, s.colormap.data(), s.colormap.data() + n, s.colormap.data() + 2 * n);
  }
  const int planes = s.planar == PLANARCONFIG_SEPARATE ? s.samples : 1, per_plane = s.samples / planes;
  auto pack = [&](int x0, int y, int width, int plane, std::vector<uint8_t>& out) {
    out.assign((static_cast<size_t>(width) * per_plane * s.bits + 7) / 8, 0);
    for (int x = 0; x < width; ++x)
      for (int k = 0; k < per_plane; ++k) {
        const int c = plane * per_plane + k, bit = (x * per_plane + k) * s.bits;
        const int v = x0 + x < s.width && y < s.height ? tiff_sample(x0 + x, y, c, s.bits) : 0;
        if (s.bits == 16) out[bit / 8] = static_cast<uint8_t>(v), out[bit / 8 + 1] = static_cast<uint8_t>(v >> 8);
        else if (s.bits == 8) out[bit / 8] = static_cast<uint8_t>(v);
        else out[bit / 8] |= static_cast<uint8_t>(v << (8 - s.bits - bit % 8));
      }
  };
  std::vector<uint8_t> buffer;
  if (s.tile > 0) {
    TIFFSetField(t, TIFFTAG_TILEWIDTH, s.tile);
    TIFFSetField(t, TIFFTAG_TILELENGTH, s.tile);
    for (int plane = 0; plane < planes; ++plane)
      for (int ty = 0; ty < s.height; ty += s.tile)
        for (int tx = 0; tx < s.width; tx += s.tile) {
          std::vector<uint8_t> tile_bytes;
          for (int y = 0; y < s.tile; ++y) {
            pack(tx, ty + y, s.tile, plane, buffer);
            tile_bytes.insert(tile_bytes.end(), buffer.begin(), buffer.end());
          }
          EXPECT_GE(TIFFWriteTile(t, tile_bytes.data(), tx, ty, 0, static_cast<uint16_t>(plane)), 0);
        }
  } else {
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 2);
    for (int plane = 0; plane < planes; ++plane)
      for (int y = 0; y < s.height; ++y) {
        pack(0, y, s.width, plane, buffer);
        EXPECT_EQ(TIFFWriteScanline(t, buffer.data(), y, static_cast<uint16_t>(plane)), 1);
      }
  }
  TIFFClose(t);
  return read_file_limited(path, "t.tiff", 1 << 20);
}

// The BGR(A) pixel at (x, y) that a TiffSpec image holds, as decode_pixels should give it.
cv::Vec4i tiff_expected(const TiffSpec& s, int x, int y) {
  auto v8 = [&](int c) { return s.bits == 16 ? tiff_sample(x, y, c, 16) : tiff_sample(x, y, c, s.bits) * 255 / ((1 << s.bits) - 1); };
  if (!s.colormap.empty()) {
    const int i = tiff_sample(x, y, 0, s.bits), n = 1 << s.bits;
    return {s.colormap[2 * n + i] >> 8, s.colormap[n + i] >> 8, s.colormap[i] >> 8, 255};
  }
  if (s.photometric == PHOTOMETRIC_MINISWHITE) return {255 - v8(0), 255 - v8(0), 255 - v8(0), 255};
  if (s.samples == 1) return {v8(0), v8(0), v8(0), 255};
  return {v8(2), v8(1), v8(0), s.samples == 4 ? v8(3) : 255};
}

TEST(ImageCodec, TiffLayoutsDecodeToTheirPixels) {
  TempDir temp("tiff");
  std::vector<uint16_t> colormap;
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 16; ++i) colormap.push_back(static_cast<uint16_t>(((i * 17 + c * 50) % 256) * 257));
  std::vector<std::pair<std::string, TiffSpec>> specs;
  specs.push_back({"rgb strips", {}});
  specs.push_back({"rgb 16-bit deflate", tiff_spec(6, 5, 3, 16, PHOTOMETRIC_RGB, COMPRESSION_ADOBE_DEFLATE)});
  specs.push_back({"rgba straight alpha", with(tiff_spec(6, 5, 4, 8, PHOTOMETRIC_RGB, COMPRESSION_LZW), [](TiffSpec& s) { s.extra = EXTRASAMPLE_UNASSALPHA; })});
  specs.push_back({"grey", tiff_spec(6, 5, 1, 8, PHOTOMETRIC_MINISBLACK)});
  specs.push_back({"rgb tiled", with(tiff_spec(40, 20, 3, 8, PHOTOMETRIC_RGB, COMPRESSION_LZW), [](TiffSpec& s) { s.tile = 16; })});
  specs.push_back({"rgb planes", with(tiff_spec(6, 5, 3, 8, PHOTOMETRIC_RGB), [](TiffSpec& s) { s.planar = PLANARCONFIG_SEPARATE; })});
  specs.push_back({"grey white is zero", tiff_spec(6, 5, 1, 8, PHOTOMETRIC_MINISWHITE)});
  specs.push_back({"grey 1-bit", tiff_spec(13, 5, 1, 1, PHOTOMETRIC_MINISBLACK)});
  TiffSpec palette = tiff_spec(6, 5, 1, 4, PHOTOMETRIC_PALETTE);
  palette.colormap = colormap;
  specs.push_back({"palette 4-bit", palette});
  for (const auto& [what, spec] : specs) {
    SCOPED_TRACE(what);
    const std::string bytes = write_tiff(spec, temp.path());
    cv::Mat got = decode_pixels(bytes, ImageFormat::kTiff, what, kNoLimit);
    ASSERT_EQ(got.size(), cv::Size(spec.width, spec.height));
    ASSERT_EQ(got.depth(), spec.bits == 16 ? CV_16U : CV_8U);
    // Grey and RGB(A) in strips read as stored; the rest through TIFFRGBAImage, as colour.
    const bool stored_grey = spec.photometric == PHOTOMETRIC_MINISBLACK && spec.bits >= 8 && spec.tile == 0;
    EXPECT_EQ(got.channels(), spec.samples == 4 ? 4 : stored_grey ? 1 : 3);
    int wrong = 0;
    for (int y = 0; y < spec.height; ++y)
      for (int x = 0; x < spec.width; ++x) {
        const cv::Vec4i want = tiff_expected(spec, x, y);
        for (int c = 0; c < got.channels(); ++c) {
          const int v = got.depth() == CV_16U ? got.ptr<uint16_t>(y)[x * got.channels() + c] : got.ptr<uint8_t>(y)[x * got.channels() + c];
          if (v != want[got.channels() == 1 ? 0 : c] && wrong++ < 5) ADD_FAILURE() << "(" << x << ", " << y << ") channel " << c << ": " << v << ", want " << want[c];
        }
      }
  }
}

TEST(ImageCodec, TiffOrientationTagIsApplied) {
  TempDir temp("tiff");
  TiffSpec upright = tiff_spec(6, 4, 3, 8, PHOTOMETRIC_RGB);
  TiffSpec rotated = upright;
  rotated.orientation = ORIENTATION_RIGHTTOP;  // 6: the stored top row is the displayed right column
  DecodedImage a = decode_image(write_tiff(upright, temp.path()), "upright.tiff");
  DecodedImage b = decode_image(write_tiff(rotated, temp.path()), "rotated.tiff");
  EXPECT_EQ(b.orientation, 6);
  cv::Mat want;
  cv::rotate(a.rgb, want, cv::ROTATE_90_CLOCKWISE);
  EXPECT_TRUE(same_pixels(b.rgb, want));
  // The tiled path (TIFFRGBAImage) leaves rotation to decode_image as well.
  rotated.tile = 16, upright.tile = 16;
  EXPECT_TRUE(same_pixels(decode_image(write_tiff(rotated, temp.path()), "r.tiff").rgb, want));
}

// --- BMP, as Pillow reads it -----------------------------------------------------------------------

std::string le16(uint32_t v) { return {char(v), char(v >> 8)}; }

// A BMP with a BITMAPINFOHEADER (40 bytes, or `header` bytes with the masks inside it), then
// `extra` (masks after a 40-byte header, or a palette), then `pixels` as stored.
std::string bmp(int width, int height, int bpp, uint32_t compression, const std::string& extra, const std::string& pixels,
                uint32_t header = 40, const std::string& masks_in_header = "", uint32_t colors_used = 0) {
  std::string dib = le32(header) + le32(static_cast<uint32_t>(width)) + le32(static_cast<uint32_t>(height)) + le16(1) + le16(bpp) +
                    le32(compression) + le32(static_cast<uint32_t>(pixels.size())) + le32(2835) + le32(2835) + le32(colors_used) + le32(0);
  dib += masks_in_header;
  dib.resize(header, '\0');
  const uint32_t offset = 14 + header + static_cast<uint32_t>(extra.size());
  return "BM" + le32(offset + static_cast<uint32_t>(pixels.size())) + le32(0) + le32(offset) + dib + extra + pixels;
}

std::vector<uint8_t> pixels_of(const BmpPixels& p) { return p.pixels; }

TEST(BmpDecode, ThirtyTwoBitRgbIgnoresItsFourthByteAsPillowDoes) {
  // 2x1, bottom-up: (B, G, R, X) with X = 0, which OpenCV took for a transparent alpha.
  BmpPixels p = decode_bmp(bmp(2, 1, 32, 0, "", std::string("\x01\x02\x03\x00\x04\x05\x06\x00", 8)), "x.bmp", kNoLimit);
  EXPECT_EQ(p.channels, 3);
  EXPECT_EQ(pixels_of(p), (std::vector<uint8_t>{1, 2, 3, 4, 5, 6}));
}

TEST(BmpDecode, BitFieldsWithAnAlphaMaskGiveStraightAlpha) {
  // V4 header (108 bytes): masks R 0x00FF0000, G 0x0000FF00, B 0x000000FF, A 0xFF000000.
  const std::string masks = le32(0x00FF0000) + le32(0x0000FF00) + le32(0x000000FF) + le32(0xFF000000);
  BmpPixels p = decode_bmp(bmp(1, 1, 32, 3, "", std::string("\x0A\x14\x1E\x80", 4), 108, masks), "a.bmp", kNoLimit);
  EXPECT_EQ(p.channels, 4);
  EXPECT_EQ(pixels_of(p), (std::vector<uint8_t>{10, 20, 30, 128}));
}

TEST(BmpDecode, SixteenBitFieldsScaleToEightBits) {
  // 5-6-5 masks after a 40-byte header; one pixel R = 31, G = 32, B = 1 -> 255, 130, 8.
  const uint32_t pixel = (31u << 11) | (32u << 5) | 1u;
  std::string data = le16(pixel) + std::string(2, '\0');  // rows pad to 4 bytes
  BmpPixels p = decode_bmp(bmp(1, 1, 16, 3, le32(0xF800) + le32(0x07E0) + le32(0x001F), data), "565.bmp", kNoLimit);
  EXPECT_EQ(pixels_of(p), (std::vector<uint8_t>{8, 130, 255}));  // B, G, R: round(1*255/31), round(32*255/63)
  // No compression at 16 bits is 5-5-5: R = 16 -> round(16 * 255 / 31) = 132.
  BmpPixels q = decode_bmp(bmp(1, 1, 16, 0, "", le16(16u << 10) + std::string(2, '\0')), "555.bmp", kNoLimit);
  EXPECT_EQ(pixels_of(q), (std::vector<uint8_t>{0, 0, 132}));
}

TEST(BmpDecode, PalettesOfOneFourAndEightBits) {
  const std::string palette = std::string("\x00\x00\xFF\x00", 4) + std::string("\x00\xFF\x00\x00", 4);  // 0: red, 1: green
  // 1-bit, 10x2 bottom-up: stored row 0 (displayed bottom) is 1010101010, row 1 is all 0.
  const std::string rows = std::string("\xAA\x80\0\0", 4) + std::string(4, '\0');
  BmpPixels p = decode_bmp(bmp(10, 2, 1, 0, palette, rows, 40, "", 2), "p1.bmp", kNoLimit);
  ASSERT_EQ(p.pixels.size(), 60u);
  for (int x = 0; x < 10; ++x) {
    EXPECT_EQ(p.pixels[x * 3 + 2], 255) << "top row is red at " << x;
    EXPECT_EQ(p.pixels[30 + x * 3 + 1], x % 2 == 0 ? 255 : 0) << "bottom row alternates at " << x;
  }
  // 4-bit, 3x1: indices 1, 0, 1 (the last nibble is padding).
  BmpPixels q = decode_bmp(bmp(3, 1, 4, 0, palette, std::string("\x10\x10\0\0", 4), 40, "", 2), "p4.bmp", kNoLimit);
  EXPECT_EQ(pixels_of(q), (std::vector<uint8_t>{0, 255, 0, 0, 0, 255, 0, 255, 0}));
  // 8-bit, top-down (negative height), 1x2; an index past the palette is black.
  BmpPixels r = decode_bmp(bmp(1, -2, 8, 0, palette, std::string("\x01\0\0\0\x07\0\0\0", 8), 40, "", 2), "p8.bmp", kNoLimit);
  EXPECT_EQ(pixels_of(r), (std::vector<uint8_t>{0, 255, 0, 0, 0, 0}));
}

TEST(BmpDecode, RunLengthEncodedPalettes) {
  const std::string palette = std::string("\0\0\0\0", 4) + std::string("\xFF\0\0\0", 4) + std::string("\0\xFF\0\0", 4);  // black, blue, green
  // RLE8, 4x3 bottom-up: row 0 = run of 3 x index 1, end of line; row 1 = literal (2, 1, 2, 1),
  // end of line; delta (1 right, 0 up) then one index 2 at (1, 2); end of bitmap.
  const std::string rle8 = std::string("\x03\x01\x00\x00", 4) + std::string("\x00\x04\x02\x01\x02\x01\x00\x00", 8) +
                           std::string("\x00\x02\x01\x00\x01\x02\x00\x01", 8);
  BmpPixels p = decode_bmp(bmp(4, 3, 8, 1, palette, rle8, 40, "", 3), "rle8.bmp", kNoLimit);
  auto blue_at = [&](const BmpPixels& b, int x, int y) { return b.pixels[(y * b.width + x) * 3] == 255; };
  auto green_at = [&](const BmpPixels& b, int x, int y) { return b.pixels[(y * b.width + x) * 3 + 1] == 255; };
  // Displayed rows are top to bottom: stored row 2 is displayed row 0.
  EXPECT_TRUE(green_at(p, 1, 0));
  EXPECT_FALSE(green_at(p, 0, 0) || blue_at(p, 0, 0) || green_at(p, 2, 0));
  EXPECT_TRUE(green_at(p, 0, 1) && blue_at(p, 1, 1) && green_at(p, 2, 1) && blue_at(p, 3, 1));
  EXPECT_TRUE(blue_at(p, 0, 2) && blue_at(p, 1, 2) && blue_at(p, 2, 2));
  EXPECT_FALSE(blue_at(p, 3, 2));
  // RLE4, 5x1: a run of 5 alternating 1, 2 then end of bitmap.
  BmpPixels q = decode_bmp(bmp(5, 1, 4, 2, palette, std::string("\x05\x12\x00\x01", 4), 40, "", 3), "rle4.bmp", kNoLimit);
  for (int x = 0; x < 5; ++x) EXPECT_TRUE(x % 2 == 0 ? blue_at(q, x, 0) : green_at(q, x, 0)) << x;
}

TEST(BmpDecode, CoreHeaderOfOs2) {
  // BITMAPCOREHEADER (12 bytes: 16-bit sides), 24-bit, 1x1 blue.
  std::string dib = le32(12) + le16(1) + le16(1) + le16(1) + le16(24);
  std::string file = "BM" + le32(14 + 12 + 4) + le32(0) + le32(26) + dib + std::string("\xFF\0\0\0", 4);
  EXPECT_EQ(pixels_of(decode_bmp(file, "os2.bmp", kNoLimit)), (std::vector<uint8_t>{255, 0, 0}));
}

TEST(BmpDecode, BadFilesAreErrorsThatNameTheImage) {
  auto error_of = [](const std::string& bytes, uint64_t limit = kNoLimit) {
    try {
      decode_bmp(bytes, "bad.bmp", limit);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string good = bmp(2, 2, 24, 0, "", std::string(16, '\x10'));
  EXPECT_CONTAINS(error_of(good.substr(0, good.size() - 3)), "bad.bmp: BMP is truncated");
  EXPECT_CONTAINS(error_of(good.substr(0, 20)), "bad.bmp: BMP is truncated");
  EXPECT_CONTAINS(error_of(bmp(2, 2, 24, 4, "", std::string(16, '\0'))), "bad.bmp: a BMP holding a JPEG is not supported");
  EXPECT_CONTAINS(error_of(bmp(2, 2, 12, 0, "", std::string(16, '\0'))), "12 bits per pixel");
  EXPECT_CONTAINS(error_of(bmp(0, 2, 24, 0, "", "")), "BMP of 0x2 pixels");
  EXPECT_CONTAINS(error_of(good, 3), "2x2 is above the limit of 3 pixels");
  EXPECT_CONTAINS(error_of(bmp(1, 1, 16, 3, le32(0xF0F0) + le32(0x0F00) + le32(0x000F), std::string(4, '\0'))), "not one run of bits");
  EXPECT_CONTAINS(error_of(bmp(4, 3, 8, 1, std::string(8, '\0'), std::string("\x03\x01\x00\x00", 4), 40, "", 2)), "RLE data ends at row 1 of 3");
}

// --- damaged files ---------------------------------------------------------------------------------

TEST(ImageCodec, DamagedFilesOfEveryFormatAreErrorsNotCrashes) {
  std::vector<Case> corpus = opencv_corpus();
  TempDir temp("tiff");
  corpus.push_back({"tiled.tiff", write_tiff(with(tiff_spec(40, 20, 3, 8, PHOTOMETRIC_RGB, COMPRESSION_LZW), [](TiffSpec& s) { s.tile = 16; }), temp.path()),
                    ImageFormat::kTiff});
  cv::RNG rng(7);
  int errors = 0, decoded = 0;
  for (const Case& c : corpus) {
    if (c.bytes.size() < 64) continue;
    for (int trial = 0; trial < 12; ++trial) {
      std::string bad = c.bytes;
      if (trial < 4) {
        bad.resize(bad.size() * (trial + 1) / 5);  // cut short at 20, 40, 60, 80 %
      } else {
        for (int k = 0; k < 1 + trial % 4; ++k) bad[rng.uniform(0, static_cast<int>(bad.size()))] = static_cast<char>(rng.uniform(0, 256));
      }
      try {
        cv::Mat m = decode_pixels(bad, c.format, c.name, kNoLimit);
        ASSERT_FALSE(m.empty()) << c.name;
        ++decoded;
      } catch (const Error& e) {
        EXPECT_CONTAINS(std::string(e.what()), c.name);
        ++errors;
      }
    }
  }
  // Cut files: every PNG, WebP and BMP fails; a flipped byte may still decode (JPEG resyncs).
  EXPECT_GT(errors, 100) << decoded << " decoded";
}

TEST(ImageCodec, TruncatedFilesNameTheFormatAndTheReason) {
  auto error_of = [](const std::string& bytes, ImageFormat f) {
    try {
      decode_pixels(bytes, f, "cut.img", kNoLimit);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const cv::Mat image = noisy(64, 48, CV_8UC3, 3);
  const std::string png = encode(".png", image), webp = encode(".webp", image), tiff = encode(".tiff", image);
  EXPECT_CONTAINS(error_of(png.substr(0, png.size() / 2), ImageFormat::kPng), "image cut.img: cannot decode this PNG: the data ends early");
  EXPECT_CONTAINS(error_of(webp.substr(0, webp.size() / 2), ImageFormat::kWebp), "image cut.img: cannot decode this WebP");
  EXPECT_CONTAINS(error_of(tiff.substr(0, tiff.size() / 2), ImageFormat::kTiff), "image cut.img: cannot decode this TIFF");
  EXPECT_CONTAINS(error_of("\xFF\xD8\xFF\xDB\x00\x02", ImageFormat::kJpeg), "image cut.img: cannot decode this JPEG");
  EXPECT_CONTAINS(error_of("GIF89a", ImageFormat::kGif), "GIF is not a format xltune decodes");
}

// --- PNG encoding ----------------------------------------------------------------------------------

TEST(ImageCodec, EncodedPngsReadBackAsTheSamePixels) {
  for (int type : {CV_8UC1, CV_8UC3, CV_8UC4})
    for (ChannelOrder order : {ChannelOrder::kRgb, ChannelOrder::kBgr}) {
      SCOPED_TRACE("type " + std::to_string(type) + (order == ChannelOrder::kRgb ? " rgb" : " bgr"));
      const cv::Mat image = noisy(33, 17, type, static_cast<uint64_t>(type) + 11);
      const std::string png = encode_png(image, order);
      cv::Mat back = cv::imdecode(cv::Mat(1, static_cast<int>(png.size()), CV_8U, const_cast<char*>(png.data())), cv::IMREAD_UNCHANGED);
      cv::Mat want = image;  // OpenCV reads BGR(A): an RGB-ordered image comes back swapped
      if (order == ChannelOrder::kRgb && image.channels() == 3) cv::cvtColor(image, want, cv::COLOR_RGB2BGR);
      if (order == ChannelOrder::kRgb && image.channels() == 4) cv::cvtColor(image, want, cv::COLOR_RGBA2BGRA);
      EXPECT_TRUE(same_pixels(back, want));
    }
  EXPECT_THROW(encode_png(cv::Mat(2, 2, CV_16UC3), ChannelOrder::kRgb), Error);
  EXPECT_THROW(encode_png(cv::Mat(), ChannelOrder::kRgb), Error);
}

}  // namespace
}  // namespace xltune
