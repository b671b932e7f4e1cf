// Where model-based preprocessing plugs into data/preprocess.h: prompt masks (CLIPSeg, for
// --mask_target_prompts), captions (BLIP) and upscaling (Swin2SR). They live in core, beside
// core/image.h, because the part that implements them (prep: libtorch, no OpenCV) and the part
// that calls them (data: OpenCV, no libtorch models) may both use core and not each other: prep's
// ClipSegMasker, BlipCaptioner and Swin2SrUpscaler implement them directly, job loads the ones
// the options ask for (job/preprocess_models.h) and hands them to preprocess(). Without them
// preprocessing uses the given captions or the prefix, uniform or face masks, and Lanczos
// upscaling (see data/preprocess.h).
//
// sample_name is the image's name in the input (for errors and logs, and for keying random
// draws so that a result does not depend on the images before it).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "core/image.h"

namespace xltune {

// A mask of what matters in an image: 255 most important, 0 ignored. It weights the training
// loss and centres the salience crop.
class MaskProvider {
 public:
  virtual ~MaskProvider() = default;
  virtual std::string name() const = 0;  // for logs: "face detection", "CLIPSeg 'a dog'"
  // rgb: 3 channels. Returns 1 channel of rgb's size.
  virtual Image mask(ImageView rgb, const std::string& sample_name) = 0;
};

// A caption for an image without a CSV row or .txt sidecar (BLIP). The caller puts the caption
// prefix before it and the trigger word back as the user wrote it (data/captions.h).
class Captioner {
 public:
  virtual ~Captioner() = default;
  // One caption per image (3 channels), in order; sample_names[i] names image i (its draws are
  // keyed by it, so a caption does not depend on the batch it came in).
  virtual std::vector<std::string> captions(const std::vector<ImageView>& rgb,
                                            const std::vector<std::string>& sample_names) = 0;
  // How many images preprocess() hands over at once.
  virtual size_t batch_size() const { return 1; }
};

// Upscales a square crop smaller than the resolution (Swin2SR x4); the result is then resized
// to the resolution with Lanczos, as the reference does.
class Upscaler {
 public:
  virtual ~Upscaler() = default;
  // rgb: 3 channels. Returns 3 channels, larger by the model's factor.
  virtual Image upscale(ImageView rgb, const std::string& sample_name) = 0;
};

}  // namespace xltune
