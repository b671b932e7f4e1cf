// Where model-based preprocessing plugs in: CLIPSeg masks (--mask_target_prompts), BLIP
// captions and Swin2SR upscaling. The models themselves belong to the prep part (libtorch),
// which may not use OpenCV or this part, so the interfaces take plain pixel buffers; the job
// part adapts prep's models to them (job/preprocess_models.h) and hands them to preprocess().
// Without them preprocessing uses the given captions or the prefix, uniform or face masks, and
// Lanczos upscaling (see preprocess.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace xltune {

// Pixels row by row, top to bottom; RGB interleaved or one grey value per pixel.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;  // width * height * 3
};
struct GrayImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;  // width * height
};

// A mask of what matters in an image: 255 most important, 0 ignored. It weights the training
// loss and centres the salience crop. Same size as the image.
class MaskProvider {
 public:
  virtual ~MaskProvider() = default;
  virtual std::string name() const = 0;  // for logs: "face detection", "CLIPSeg 'a dog'"
  virtual GrayImage mask(const RgbImage& image, const std::string& sample_name) = 0;
};

// A caption for an image without a CSV row or .txt sidecar (BLIP). The result follows the
// caption prefix: "<prefix> <caption>".
class Captioner {
 public:
  virtual ~Captioner() = default;
  // One caption per image, in order; sample_names[i] names image i (its draws are keyed by it,
  // so a caption does not depend on the batch it came in).
  virtual std::vector<std::string> captions(const std::vector<RgbImage>& images,
                                            const std::vector<std::string>& sample_names) = 0;
  // How many images preprocess() hands over at once.
  virtual size_t batch_size() const { return 1; }
};

// Upscales a square crop smaller than the resolution (Swin2SR x4); the result is then resized
// to the resolution with Lanczos, as the reference does.
class Upscaler {
 public:
  virtual ~Upscaler() = default;
  virtual RgbImage upscale(const RgbImage& image, const std::string& sample_name) = 0;
};

}  // namespace xltune
