// The reference trainer's upscaling of small crops with Swin2SR, end to end (Note [Swin2SR
// upscaling] in prep/swin2sr.h): a Swin2SR folder (model, preprocessor_config.json) and 8-bit RGB
// in, 8-bit RGB of exactly upscale x the size out (the processor's pad cropped off), tiled so
// that large inputs fit in memory. It is preprocessing's Upscaler (core/image_models.h).
//
// Tiling: the processor's pixels, reflect-padded to a multiple of window_size as the model pads
// them, are cut into tiles of `tile` x `tile` input pixels (rounded up to the window; an axis that
// fits is one tile) starting on the window grid, each two neighbours sharing `overlap` pixels
// (rounded up to the window). Tiles run through the model in batches of `batch`. In the
// reconstruction each tile's weight along an axis is 0 over the outer quarter of an overlap it
// shares, rises linearly over its middle half, and is 1 elsewhere (and at the image's own
// borders); the weighted sum is divided by the summed weights. A tile's edge changes its output
// inwards by up to the model's reach (about window - 1 pixels per layer, plus the convolutions),
// so tiled = untiled to float noise where overlap / 4 exceeds that reach (tested on a tiny model),
// and close to it otherwise.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/image.h"
#include "core/image_models.h"
#include "prep/swin2sr.h"

namespace xltune {

// Swin2SRImageProcessor's preprocessor_config.json: rescale, then the symmetric pad to the next
// multiple of size_divisor (the legacy "pad_size" when size_divisor is missing).
struct Swin2SrProcessorConfig {
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255;
  bool do_pad = true;
  int64_t size_divisor = 8;

  static Swin2SrProcessorConfig from_json_text(const std::string& text, const std::string& source);
  // The padded size of a side: (side / size_divisor + 1) * size_divisor, so 1 to size_divisor
  // pixels more (transformers' rule; a side that is a multiple gets a whole size_divisor).
  int64_t padded(int64_t side) const;
};

// transformers' pixel_values for an image: rgb is height rows of width * 3 bytes. Returns
// [1, 3, H', W'] fp32 (CPU): x * rescale_factor (uint8 -> float64 -> float32, as numpy), the
// bottom and right padded as numpy's "symmetric" mode (the edge pixel repeated, then mirrored).
at::Tensor swin2sr_pixels(const Swin2SrProcessorConfig& c, const uint8_t* rgb, int width, int height);

class Swin2SrUpscaler : public Upscaler {
 public:
  // Errors name the folder and the missing or wrong file; a model that does not take and give
  // RGB is refused.
  Swin2SrUpscaler(const std::string& dir, const at::TensorOptions& options);

  // Input pixels per tile side (0: untiled) and shared between neighbours; tiles per batch.
  void set_tiling(int tile, int overlap);
  void set_batch(int tiles);
  int tile() const { return tile_; }
  int overlap() const { return overlap_; }
  int scale() const { return static_cast<int>(model_->config().upscale); }

  // An RGB image upscaled: the reference's output conversion (clamp to 0..1, * 255, round half
  // to even, uint8) of the reconstruction, the pad cropped off: RGB, scale * width x scale *
  // height. sample_name is not used.
  Image upscale(ImageView rgb, const std::string& sample_name) override;
  // The reconstruction of processed pixels [B, C, H, W] (tiled as set): [B, C_out, scale * H,
  // scale * W] fp32 on the CPU.
  at::Tensor reconstruct(const at::Tensor& pixels);

  const std::string& dir() const { return dir_; }
  const Swin2SrProcessorConfig& processor() const { return processor_; }
  Swin2Sr& model() { return model_; }

 private:
  at::Tensor reconstruct_tiled(const at::Tensor& pixels);

  std::string dir_;
  Swin2Sr model_{nullptr};
  Swin2SrProcessorConfig processor_;
  at::TensorOptions options_;
  int tile_ = 256, overlap_ = 32, batch_ = 4;  // overlap 32: 0.11 of a level on a random full-size model
};

}  // namespace xltune
