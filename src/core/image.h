// The one image type that crosses parts: 8-bit pixels, row-major, rows top to bottom and
// tightly packed (no stride), channels interleaved (3: R, G, B; 1: grey, e.g. a mask).
//
// Why in core, and why so plain: data holds images as cv::Mat, and prep (the preprocessing
// models, libtorch only) may not use OpenCV or data (docs/design.md, "Parts"); both may use
// core. So the model interfaces (core/image_models.h) take and give these, prep implements them
// on these alone, and data converts cv::Mat <-> Image in one place (data/image_convert.h).
//
// Image owns its pixels (what a model returns: a mask, an upscaled crop). ImageView borrows
// them (what a model reads: the caller's decoded photo, without a copy); it is valid while the
// pixels it points at are, and a named Image converts to one implicitly so that either can be
// passed where a view is taken.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace xltune {

struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;             // 3 (RGB) or 1 (grey)
  std::vector<uint8_t> pixels;  // height * width * channels bytes

  // width x height x channels, every byte `fill`.
  static Image filled(int width, int height, int channels, uint8_t fill = 0);
};

struct ImageView {
  const uint8_t* pixels = nullptr;  // height * width * channels bytes
  int width = 0;
  int height = 0;
  int channels = 0;

  ImageView() = default;
  ImageView(const uint8_t* pixels, int width, int height, int channels)
      : pixels(pixels), width(width), height(height), channels(channels) {}
  // Implicit on purpose: an owned image is passed wherever a view is read.
  ImageView(const Image& image)  // NOLINT(google-explicit-constructor)
      : pixels(image.pixels.data()), width(image.width), height(image.height), channels(image.channels) {}
  // Not of a temporary: the view would outlive its pixels (name the Image first).
  ImageView(Image&&) = delete;

  size_t bytes() const { return static_cast<size_t>(width) * height * channels; }
};

// Throws Error naming `what` unless `image` has pixels, a positive size and `channels` channels
// (and, for an Image, exactly the bytes its size says).
void check_image(const ImageView& image, int channels, const std::string& what);
void check_image(const Image& image, int channels, const std::string& what);

}  // namespace xltune
