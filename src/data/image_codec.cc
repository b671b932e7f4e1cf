#include "data/image_codec.h"

#include <csetjmp>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <algorithm>
#include <vector>

#include <jpeglib.h>
#include <png.h>
#include <tiffio.h>
#include <webp/decode.h>

#include "core/check.h"
#include "data/bmp_decode.h"

// libjpeg and libpng report errors by longjmp to a setjmp in the caller. Their decode functions
// below hold no C++ object that is created after the setjmp (those would be skipped, not
// destroyed): buffers are declared first or reached through a pointer.

namespace xltune {
namespace {

// The decoders' own reading of the size, checked before they allocate: decode_image checks
// read_image_header's first, but a decoder that disagrees must not allocate what it says.
bool size_ok(uint64_t width, uint64_t height, uint64_t max_pixels) {
  return width > 0 && height > 0 && width <= (1u << 30) && height <= (1u << 30) && width * height <= max_pixels;
}

// --- JPEG ----------------------------------------------------------------------------------------

struct JpegErrors {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_fail(j_common_ptr cinfo) {
  auto* errors = reinterpret_cast<JpegErrors*>(cinfo->err);
  cinfo->err->format_message(cinfo, errors->message);
  std::longjmp(errors->jump, 1);
}
// Warnings ("corrupt data: premature end of data segment"): libjpeg recovers and so do we;
// a JPEG cut short is caught before decoding (jpeg_is_truncated), as OpenCV ignored them.
void jpeg_warning(j_common_ptr, int) {}

// OpenCV's CMYK conversion (Adobe's inverted CMYK, which is what Photoshop and Pillow write).
void cmyk_row_to_bgr(const uint8_t* cmyk, uint8_t* bgr, int width) {
  for (int x = 0; x < width; ++x, cmyk += 4, bgr += 3) {
    const int k = cmyk[3];
    for (int c = 0; c < 3; ++c) bgr[2 - c] = static_cast<uint8_t>(k - ((255 - cmyk[c]) * k >> 8));
  }
}

bool decode_jpeg(std::string_view bytes, uint64_t max_pixels, cv::Mat* out, std::vector<uint8_t>* cmyk_row, char* message) {
  jpeg_decompress_struct cinfo;
  JpegErrors errors;
  cinfo.err = jpeg_std_error(&errors.manager);
  errors.manager.error_exit = jpeg_fail;
  errors.manager.emit_message = jpeg_warning;
  if (setjmp(errors.jump)) {
    std::snprintf(message, JMSG_LENGTH_MAX, "%s", errors.message);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  const bool cmyk = cinfo.num_components == 4;  // CMYK or YCCK, which libjpeg turns into CMYK
  const bool grey = cinfo.num_components == 1;
  cinfo.out_color_space = cmyk ? JCS_CMYK : grey ? JCS_GRAYSCALE : JCS_EXT_BGR;
  jpeg_start_decompress(&cinfo);
  if (!size_ok(cinfo.output_width, cinfo.output_height, max_pixels)) {
    std::snprintf(message, JMSG_LENGTH_MAX, "%ux%u is above the limit of %llu pixels", cinfo.output_width, cinfo.output_height,
                  static_cast<unsigned long long>(max_pixels));
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  out->create(static_cast<int>(cinfo.output_height), static_cast<int>(cinfo.output_width), grey ? CV_8UC1 : CV_8UC3);
  if (cmyk) cmyk_row->resize(static_cast<size_t>(cinfo.output_width) * 4);
  while (cinfo.output_scanline < cinfo.output_height) {
    const int y = static_cast<int>(cinfo.output_scanline);
    JSAMPROW row = cmyk ? cmyk_row->data() : out->ptr<uint8_t>(y);
    jpeg_read_scanlines(&cinfo, &row, 1);
    if (cmyk) cmyk_row_to_bgr(cmyk_row->data(), out->ptr<uint8_t>(y), out->cols);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

// --- PNG -----------------------------------------------------------------------------------------

struct PngIo {
  std::string_view in;  // decoding: the file, how far it is read, and the size allowed
  size_t at = 0;
  uint64_t max_pixels = 0;
  std::string* out = nullptr;  // encoding
  char message[256] = "";
};

void png_fail(png_structp png, png_const_charp message) {
  auto* io = static_cast<PngIo*>(png_get_error_ptr(png));
  std::snprintf(io->message, sizeof io->message, "%s", message);
  png_longjmp(png, 1);
}
void png_warning(png_structp, png_const_charp) {}

void png_read_bytes(png_structp png, png_bytep data, size_t size) {
  auto* io = static_cast<PngIo*>(png_get_io_ptr(png));
  if (size > io->in.size() - io->at) png_error(png, "the data ends early (truncated)");
  std::memcpy(data, io->in.data() + io->at, size);
  io->at += size;
}

bool decode_png(PngIo* io, cv::Mat* out, std::vector<png_bytep>* rows) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, io, png_fail, png_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (info == nullptr) {
    std::snprintf(io->message, sizeof io->message, "out of memory");
    png_destroy_read_struct(&png, nullptr, nullptr);
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_set_read_fn(png, io, png_read_bytes);
  png_read_info(png, info);
  png_uint_32 width = 0, height = 0;
  int depth = 0, color = 0;
  png_get_IHDR(png, info, &width, &height, &depth, &color, nullptr, nullptr, nullptr);
  if (!size_ok(width, height, io->max_pixels)) png_error(png, "the image is above the pixel limit");
  const bool transparency = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
  // OpenCV's channels: grey 1 (its tRNS ignored), colour 3, colour with alpha or tRNS 4.
  int channels = 1;
  if (color == PNG_COLOR_TYPE_RGB || color == PNG_COLOR_TYPE_PALETTE) channels = transparency ? 4 : 3;
  if (color == PNG_COLOR_TYPE_RGB_ALPHA || color == PNG_COLOR_TYPE_GRAY_ALPHA) channels = 4;
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);  // and tRNS to alpha
  if (color == PNG_COLOR_TYPE_RGB && transparency) png_set_tRNS_to_alpha(png);
  if (color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  if (channels > 1) png_set_bgr(png);
  if (depth == 16) png_set_swap(png);  // to the host's (little-endian) 16-bit samples
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const int sample_bytes = depth == 16 ? 2 : 1;
  if (png_get_rowbytes(png, info) != static_cast<size_t>(width) * channels * sample_bytes) png_error(png, "unexpected row layout");
  out->create(static_cast<int>(height), static_cast<int>(width), CV_MAKETYPE(depth == 16 ? CV_16U : CV_8U, channels));
  rows->resize(height);
  for (png_uint_32 y = 0; y < height; ++y) (*rows)[y] = out->ptr<png_byte>(static_cast<int>(y));
  png_read_image(png, rows->data());
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

void png_write_bytes(png_structp png, png_bytep data, size_t size) {
  auto* io = static_cast<PngIo*>(png_get_io_ptr(png));
  try {
    io->out->append(reinterpret_cast<const char*>(data), size);
  } catch (const std::bad_alloc&) {
    png_error(png, "out of memory");
  }
}
void png_flush(png_structp) {}

bool encode_png_into(const cv::Mat& image, ChannelOrder order, PngIo* io, std::vector<png_bytep>* rows) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, io, png_fail, png_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (info == nullptr) {
    std::snprintf(io->message, sizeof io->message, "out of memory");
    png_destroy_write_struct(&png, nullptr);
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  const int cn = image.channels();
  png_set_write_fn(png, io, png_write_bytes, png_flush);
  png_set_IHDR(png, info, static_cast<png_uint_32>(image.cols), static_cast<png_uint_32>(image.rows), 8,
               cn == 1 ? PNG_COLOR_TYPE_GRAY : cn == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGB_ALPHA, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(png, 6);
  png_write_info(png, info);
  if (cn > 1 && order == ChannelOrder::kBgr) png_set_bgr(png);
  rows->resize(static_cast<size_t>(image.rows));
  for (int y = 0; y < image.rows; ++y) (*rows)[y] = const_cast<png_bytep>(image.ptr<png_byte>(y));
  png_write_image(png, rows->data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

// --- WebP ----------------------------------------------------------------------------------------

cv::Mat decode_webp(std::string_view bytes, const std::string& name, uint64_t max_pixels) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  WebPBitstreamFeatures features;
  const VP8StatusCode status = WebPGetFeatures(data, bytes.size(), &features);
  XLTUNE_CHECK(status == VP8_STATUS_OK, "image ", name, ": cannot decode this WebP (libwebp status ", static_cast<int>(status), ")");
  XLTUNE_CHECK(!features.has_animation, "image ", name, ": an animated WebP is not a photo xltune decodes");
  XLTUNE_CHECK(size_ok(features.width, features.height, max_pixels), "image ", name, ": WebP of ", features.width, "x", features.height,
               " is above the limit of ", max_pixels, " pixels");
  cv::Mat out(features.height, features.width, features.has_alpha ? CV_8UC4 : CV_8UC3);
  const size_t size = out.step[0] * static_cast<size_t>(out.rows);
  const int stride = static_cast<int>(out.step[0]);
  const uint8_t* done = features.has_alpha ? WebPDecodeBGRAInto(data, bytes.size(), out.data, size, stride)
                                           : WebPDecodeBGRInto(data, bytes.size(), out.data, size, stride);
  XLTUNE_CHECK(done != nullptr, "image ", name, ": cannot decode this WebP (corrupt or truncated data)");
  return out;
}

// --- TIFF ----------------------------------------------------------------------------------------

struct TiffMemory {
  std::string_view in;
  toff_t at = 0;
  std::string message;
};

tmsize_t tiff_read(thandle_t h, void* data, tmsize_t size) {
  auto* m = static_cast<TiffMemory*>(h);
  if (m->at >= m->in.size() || size <= 0) return 0;
  const tmsize_t n = std::min<tmsize_t>(size, static_cast<tmsize_t>(m->in.size() - m->at));
  std::memcpy(data, m->in.data() + m->at, static_cast<size_t>(n));
  m->at += static_cast<toff_t>(n);
  return n;
}
tmsize_t tiff_write(thandle_t, void*, tmsize_t) { return -1; }
toff_t tiff_seek(thandle_t h, toff_t offset, int whence) {
  auto* m = static_cast<TiffMemory*>(h);
  const toff_t base = whence == SEEK_CUR ? m->at : whence == SEEK_END ? m->in.size() : 0;
  m->at = base + offset;
  return m->at;
}
int tiff_close(thandle_t) { return 0; }
toff_t tiff_size(thandle_t h) { return static_cast<TiffMemory*>(h)->in.size(); }
int tiff_map(thandle_t h, void** base, toff_t* size) {
  auto* m = static_cast<TiffMemory*>(h);
  *base = const_cast<char*>(m->in.data());
  *size = m->in.size();
  return 1;
}
void tiff_unmap(thandle_t, void*, toff_t) {}

int tiff_error(TIFF*, void* user, const char* module, const char* format, va_list args) {
  auto* m = static_cast<TiffMemory*>(user);
  char text[512];
  std::vsnprintf(text, sizeof text, format, args);
  if (m->message.empty()) m->message = text;  // the first error is the cause
  return 1;
}
int tiff_quiet(TIFF*, void*, const char*, const char*, va_list) { return 1; }

struct TiffCloser {
  void operator()(TIFF* t) const { TIFFClose(t); }
};

// Grey or RGB, 8 or 16-bit unsigned, interleaved, in strips: read as stored, as OpenCV did.
cv::Mat read_tiff_scanlines(TIFF* tiff, TiffMemory& memory, int width, int height, int samples, int bits, bool rgb,
                            const std::string& name) {
  const int channels = samples == 2 ? 4 : samples;  // grey + alpha reads as BGRA
  cv::Mat out(height, width, CV_MAKETYPE(bits == 16 ? CV_16U : CV_8U, channels));
  std::vector<uint8_t> line(static_cast<size_t>(TIFFScanlineSize(tiff)));
  const size_t sample_bytes = bits / 8;
  XLTUNE_CHECK(line.size() >= static_cast<size_t>(width) * samples * sample_bytes, "image ", name, ": TIFF rows are shorter than ", width,
               " pixels");
  for (int y = 0; y < height; ++y) {
    XLTUNE_CHECK(TIFFReadScanline(tiff, line.data(), static_cast<uint32_t>(y)) >= 0, "image ", name, ": cannot decode this TIFF: ",
                 memory.message.empty() ? "corrupt or truncated data" : memory.message);
    uint8_t* dst = out.ptr<uint8_t>(y);
    const uint8_t* src = line.data();
    for (int x = 0; x < width; ++x, src += samples * sample_bytes, dst += channels * sample_bytes) {
      auto copy = [&](int to, int from) { std::memcpy(dst + to * sample_bytes, src + from * sample_bytes, sample_bytes); };
      if (!rgb && samples == 1) {
        copy(0, 0);
      } else if (!rgb) {  // grey, alpha
        copy(0, 0), copy(1, 0), copy(2, 0), copy(3, 1);
      } else {
        copy(0, 2), copy(1, 1), copy(2, 0);
        if (samples == 4) copy(3, 3);
      }
    }
  }
  return out;
}

// Everything else libtiff can render (palettes, YCbCr, CMYK, tiles, planes, 1-bit, Lab ...):
// 8-bit RGBA through TIFFRGBAImage, in stored row order (its orientation set to the file's).
cv::Mat read_tiff_rgba(TIFF* tiff, TiffMemory& memory, int width, int height, const std::string& name) {
  char reason[1024] = "";
  XLTUNE_CHECK(TIFFRGBAImageOK(tiff, reason), "image ", name, ": cannot decode this TIFF: ", reason);
  TIFFRGBAImage image;
  XLTUNE_CHECK(TIFFRGBAImageBegin(&image, tiff, 0, reason), "image ", name, ": cannot decode this TIFF: ", reason);
  image.req_orientation = image.orientation;  // no flips: decode_image applies the orientation
  std::vector<uint32_t> raster(static_cast<size_t>(width) * height);
  const int ok = TIFFRGBAImageGet(&image, raster.data(), static_cast<uint32_t>(width), static_cast<uint32_t>(height));
  const bool premultiplied = image.alpha == EXTRASAMPLE_UNASSALPHA || image.alpha == EXTRASAMPLE_ASSOCALPHA;
  const bool alpha = image.alpha != 0;
  TIFFRGBAImageEnd(&image);
  XLTUNE_CHECK(ok, "image ", name, ": cannot decode this TIFF: ", memory.message.empty() ? "corrupt or truncated data" : memory.message);
  cv::Mat out(height, width, alpha ? CV_8UC4 : CV_8UC3);
  for (int y = 0; y < height; ++y) {
    uint8_t* dst = out.ptr<uint8_t>(y);
    for (int x = 0; x < width; ++x, dst += out.channels()) {
      const uint32_t p = raster[static_cast<size_t>(y) * width + x];
      const uint32_t a = TIFFGetA(p);
      const uint32_t rgb[3] = {TIFFGetR(p), TIFFGetG(p), TIFFGetB(p)};
      for (int c = 0; c < 3; ++c) {
        // TIFFRGBAImage premultiplies unassociated alpha; undo it so that every decoder hands
        // decode_image straight alpha.
        uint32_t v = rgb[c];
        if (alpha && premultiplied) v = a == 0 ? 0 : std::min<uint32_t>(255, (v * 255 + a / 2) / a);
        dst[2 - c] = static_cast<uint8_t>(v);
      }
      if (alpha) dst[3] = static_cast<uint8_t>(a);
    }
  }
  return out;
}

cv::Mat decode_tiff(std::string_view bytes, const std::string& name, uint64_t max_pixels) {
  TiffMemory memory{bytes, 0, {}};
  std::unique_ptr<TIFFOpenOptions, void (*)(TIFFOpenOptions*)> options(TIFFOpenOptionsAlloc(), TIFFOpenOptionsFree);
  TIFFOpenOptionsSetErrorHandlerExtR(options.get(), tiff_error, &memory);
  TIFFOpenOptionsSetWarningHandlerExtR(options.get(), tiff_quiet, nullptr);
  std::unique_ptr<TIFF, TiffCloser> tiff(TIFFClientOpenExt(name.c_str(), "r", &memory, tiff_read, tiff_write, tiff_seek, tiff_close,
                                                           tiff_size, tiff_map, tiff_unmap, options.get()));
  XLTUNE_CHECK(tiff != nullptr, "image ", name, ": cannot decode this TIFF: ", memory.message.empty() ? "not readable" : memory.message);
  uint32_t width = 0, height = 0;
  uint16_t samples = 1, bits = 1, format = SAMPLEFORMAT_UINT, planar = PLANARCONFIG_CONTIG, photometric = 0;
  TIFFGetField(tiff.get(), TIFFTAG_IMAGEWIDTH, &width);
  TIFFGetField(tiff.get(), TIFFTAG_IMAGELENGTH, &height);
  TIFFGetFieldDefaulted(tiff.get(), TIFFTAG_SAMPLESPERPIXEL, &samples);
  TIFFGetFieldDefaulted(tiff.get(), TIFFTAG_BITSPERSAMPLE, &bits);
  TIFFGetFieldDefaulted(tiff.get(), TIFFTAG_SAMPLEFORMAT, &format);
  TIFFGetFieldDefaulted(tiff.get(), TIFFTAG_PLANARCONFIG, &planar);
  const bool has_photometric = TIFFGetField(tiff.get(), TIFFTAG_PHOTOMETRIC, &photometric) == 1;
  XLTUNE_CHECK(size_ok(width, height, max_pixels), "image ", name, ": TIFF of ", width, "x", height, " pixels (the limit is ", max_pixels,
               ")");
  const bool grey = has_photometric && photometric == PHOTOMETRIC_MINISBLACK && (samples == 1 || samples == 2);
  const bool rgb = has_photometric && photometric == PHOTOMETRIC_RGB && (samples == 3 || samples == 4);
  if (!TIFFIsTiled(tiff.get()) && planar == PLANARCONFIG_CONTIG && format == SAMPLEFORMAT_UINT && (bits == 8 || bits == 16) &&
      (grey || rgb))
    return read_tiff_scanlines(tiff.get(), memory, static_cast<int>(width), static_cast<int>(height), samples, bits, rgb, name);
  return read_tiff_rgba(tiff.get(), memory, static_cast<int>(width), static_cast<int>(height), name);
}

cv::Mat from_bmp(std::string_view bytes, const std::string& name, uint64_t max_pixels) {
  BmpPixels bmp = decode_bmp(bytes, name, max_pixels);
  cv::Mat view(bmp.height, bmp.width, CV_8UC(bmp.channels), bmp.pixels.data());
  return view.clone();
}

}  // namespace

cv::Mat decode_pixels(std::string_view bytes, ImageFormat format, const std::string& name, uint64_t max_pixels) {
  switch (format) {
    case ImageFormat::kJpeg: {
      cv::Mat out;
      std::vector<uint8_t> cmyk_row;
      char message[JMSG_LENGTH_MAX] = "";
      XLTUNE_CHECK(decode_jpeg(bytes, max_pixels, &out, &cmyk_row, message), "image ", name, ": cannot decode this JPEG: ", message);
      return out;
    }
    case ImageFormat::kPng: {
      cv::Mat out;
      std::vector<png_bytep> rows;
      PngIo io;
      io.in = bytes;
      io.max_pixels = max_pixels;
      XLTUNE_CHECK(decode_png(&io, &out, &rows), "image ", name, ": cannot decode this PNG: ", io.message);
      return out;
    }
    case ImageFormat::kWebp: return decode_webp(bytes, name, max_pixels);
    case ImageFormat::kTiff: return decode_tiff(bytes, name, max_pixels);
    case ImageFormat::kBmp: return from_bmp(bytes, name, max_pixels);
    default: XLTUNE_FAIL("image ", name, ": ", image_format_name(format), " is not a format xltune decodes");
  }
}

std::string encode_png(const cv::Mat& image, ChannelOrder order) {
  const int cn = image.channels();
  XLTUNE_CHECK(!image.empty() && image.depth() == CV_8U && (cn == 1 || cn == 3 || cn == 4), "PNG: expected 8-bit pixels with 1, 3 or 4 channels, not a ",
               image.cols, "x", image.rows, " image of OpenCV type ", image.type());
  std::string out;
  PngIo io;
  io.out = &out;
  std::vector<png_bytep> rows;
  XLTUNE_CHECK(encode_png_into(image, order, &io, &rows), "PNG: cannot encode a ", image.cols, "x", image.rows, " image: ", io.message);
  return out;
}

}  // namespace xltune
