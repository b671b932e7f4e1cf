// The preprocessing models a run asks for, loaded and adapted to preprocess()'s interfaces
// (data/preprocess_models.h): CLIPSeg for --mask_target_prompts, from --clipseg_model or
// --preprocess_models DIR/clipseg-rd64-refined (or DIR/clipseg). Only what the options use is
// loaded; a folder that is named but broken is an error naming it.
#pragma once

#include <memory>

#include <c10/core/Device.h>

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
};

LoadedPreprocessModels load_preprocess_models(const PreprocessOptions& options, at::Device device);

// The CLIPSeg folder the options name ("" when none): --clipseg_model, else a standard
// sub-folder of --preprocess_models that exists.
std::string clipseg_folder(const PreprocessOptions& options);

}  // namespace xltune
