// The image processors of the preprocessing models (transformers' ViTImageProcessor,
// BlipImageProcessor, ... with the PIL backend), from a model's preprocessor_config.json:
// resize with Pillow's filter on 8-bit pixels (core/pil_resample.h), then rescale
// (x * rescale_factor) and normalise ((x - mean) / std) per channel.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>

#include "core/pil_resample.h"

namespace xltune {

struct ImageProcessorConfig {
  bool do_resize = true;
  int64_t height = 224, width = 224;
  PilFilter resample = PilFilter::kBilinear;  // PIL's numbers: 2 bilinear, 3 bicubic, 1 lanczos
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255;
  bool do_normalize = true;
  std::array<double, 3> image_mean{0.5, 0.5, 0.5}, image_std{0.5, 0.5, 0.5};

  // Errors name the file and field; a size given as {"shortest_edge"} is refused (not used by
  // the three models).
  static ImageProcessorConfig from_json_text(const std::string& text, const std::string& source);
};

// rgb: height rows of width * 3 bytes. Returns [1, 3, H, W] fp32 (CPU).
at::Tensor process_image(const ImageProcessorConfig& c, const uint8_t* rgb, int width, int height);

}  // namespace xltune
