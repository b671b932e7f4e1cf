// The preprocessing models a run asks for, loaded as the interfaces preprocess() takes
// (core/image_models.h; prep's models implement them):
//   CLIPSeg for --mask_target_prompts: --clipseg_model, or DIR/clipseg-rd64-refined (DIR/clipseg)
//   BLIP captions:                     --blip_model, or DIR/blip-image-captioning-large (DIR/blip)
//   Swin2SR x4 upscaling:              --upscaler_model, or
//                                      DIR/swin2SR-realworld-sr-x4-64-bsrgan-psnr (DIR/swin2sr)
// where DIR is --preprocess_models. Only what the options use is loaded; a folder that is named
// but broken is an error naming it. The models run in the placement's frozen dtype (Note [One
// placement]: bf16 on a GPU, fp32 on a CPU), whichever command loads them. BLIP decodes as the
// reference (sampling, top-k 50, temperature 0.7, 150 tokens), seeded with
// --seed (PreprocessOptions::caption_seed).
#pragma once

#include <memory>

#include "core/image_models.h"
#include "core/placement.h"
#include "data/preprocess.h"

namespace xltune {

class LoadedPreprocessModels {
 public:
  LoadedPreprocessModels() = default;
  LoadedPreprocessModels(LoadedPreprocessModels&&) = default;
  LoadedPreprocessModels& operator=(LoadedPreprocessModels&&) = default;
  ~LoadedPreprocessModels();
  PreprocessModels view() const;
  std::unique_ptr<MaskProvider> masks;
  std::unique_ptr<Captioner> captioner;
  std::unique_ptr<Upscaler> upscaler;
};

LoadedPreprocessModels load_preprocess_models(const PreprocessOptions& options, const Placement& placement);

// The folder of each model the options name ("" when none): the explicit option, else a
// standard sub-folder of --preprocess_models that exists.
std::string clipseg_folder(const PreprocessOptions& options);
std::string blip_folder(const PreprocessOptions& options);
std::string upscaler_folder(const PreprocessOptions& options);

}  // namespace xltune
