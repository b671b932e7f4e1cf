#include "data/image_decode.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "core/check.h"
#include "data/exif_orientation.h"
#include "data/image_codec.h"

namespace xltune {

namespace {
// Any sample depth to 8 bits, full range kept: 16-bit /257 (65535 -> 255, rounded), float
// [0, 1] -> [0, 255]. PIL's convert("RGB") clips 16-bit instead, which whitens most photos.
cv::Mat to_8bit(const cv::Mat& in, const std::string& name) {
  switch (in.depth()) {
    case CV_8U: return in;
    case CV_16U: {
      cv::Mat out;
      in.convertTo(out, CV_8U, 1.0 / 257.0);
      return out;
    }
    case CV_32F: {
      cv::Mat out;
      in.convertTo(out, CV_8U, 255.0);
      return out;
    }
    default: XLTUNE_FAIL("image ", name, ": unsupported sample type (OpenCV depth ", in.depth(), "); expected 8 or 16 bits or float");
  }
}

// BGRA over a white background; the result is RGB.
cv::Mat composite_on_white(const cv::Mat& bgra) {
  cv::Mat out(bgra.rows, bgra.cols, CV_8UC3);
  for (int y = 0; y < bgra.rows; ++y) {
    const auto* src = bgra.ptr<cv::Vec4b>(y);
    auto* dst = out.ptr<cv::Vec3b>(y);
    for (int x = 0; x < bgra.cols; ++x) {
      int a = src[x][3];
      for (int c = 0; c < 3; ++c) {
        // c*a/255 + 255*(255-a)/255, rounded; exact for a = 0 and a = 255.
        dst[x][2 - c] = static_cast<uint8_t>((src[x][c] * a + 255 * (255 - a) + 127) / 255);
      }
    }
  }
  return out;
}
}  // namespace

std::string read_file_limited(const std::string& path, const std::string& name, uint64_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  XLTUNE_CHECK_ERRNO(fd, "image ", name, ": cannot open ", path);
  struct stat st {};
  if (::fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    XLTUNE_FAIL("image ", name, ": ", path, " is not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    XLTUNE_FAIL("image ", name, ": file of ", st.st_size, " bytes is above the limit of ", max_bytes, " bytes");
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      XLTUNE_FAIL("image ", name, ": cannot read ", path, ": ", n == 0 ? "file shrank while reading" : std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return out;
}

cv::Mat apply_orientation(const cv::Mat& image, int orientation) {
  cv::Mat out;
  switch (orientation) {
    case 2: cv::flip(image, out, 1); return out;
    case 3: cv::rotate(image, out, cv::ROTATE_180); return out;
    case 4: cv::flip(image, out, 0); return out;
    case 5: cv::transpose(image, out); return out;
    case 6: cv::rotate(image, out, cv::ROTATE_90_CLOCKWISE); return out;
    case 7: {
      cv::Mat t;
      cv::transpose(image, t);
      cv::rotate(t, out, cv::ROTATE_180);
      return out;
    }
    case 8: cv::rotate(image, out, cv::ROTATE_90_COUNTERCLOCKWISE); return out;
    default: return image;
  }
}

DecodedImage decode_image(std::string_view bytes, const std::string& name, const DecodeLimits& limits) {
  XLTUNE_CHECK(!bytes.empty(), "image ", name, ": empty file");
  XLTUNE_CHECK(bytes.size() <= limits.max_file_bytes, "image ", name, ": file of ", bytes.size(),
               " bytes is above the limit of ", limits.max_file_bytes, " bytes");
  ImageHeader header = read_image_header(bytes, name);
  const uint64_t pixels = static_cast<uint64_t>(header.width) * static_cast<uint64_t>(header.height);
  XLTUNE_CHECK(pixels <= limits.max_image_pixels, "image ", name, ": ", header.width, "x", header.height, " is ", pixels,
               " pixels, above the limit of ", limits.max_image_pixels, " (--max_image_pixels); refused before decoding");
  XLTUNE_CHECK(header.format != ImageFormat::kJpeg || !jpeg_is_truncated(bytes), "image ", name,
               ": JPEG is truncated (no end-of-image marker after its scan data)");

  cv::Mat raw = decode_pixels(bytes, header.format, name, limits.max_image_pixels);
  // The header parser and the decoder must agree, or the pixel limit checked the wrong size.
  XLTUNE_CHECK(raw.cols == header.width && raw.rows == header.height, "image ", name, ": decoded size ", raw.cols, "x", raw.rows,
               " differs from its header's ", header.width, "x", header.height);

  cv::Mat eight = to_8bit(raw, name);
  DecodedImage out;
  out.format = header.format;
  switch (eight.channels()) {
    case 1: cv::cvtColor(eight, out.rgb, cv::COLOR_GRAY2RGB); break;
    case 3: cv::cvtColor(eight, out.rgb, cv::COLOR_BGR2RGB); break;
    case 4: out.rgb = composite_on_white(eight); break;
    default: XLTUNE_FAIL("image ", name, ": ", eight.channels(), " channels; expected 1, 3 or 4");
  }
  out.orientation = exif_orientation(bytes, header.format);
  out.rgb = apply_orientation(out.rgb, out.orientation);
  return out;
}

DecodedImage decode_image_file(const std::string& path, const std::string& name, const DecodeLimits& limits) {
  std::string bytes = read_file_limited(path, name, limits.max_file_bytes);
  return decode_image(bytes, name, limits);
}

}  // namespace xltune
