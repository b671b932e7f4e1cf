#include "job/preprocess_models.h"

#include <filesystem>

#include "core/log.h"
#include "prep/clipseg_masker.h"

namespace fs = std::filesystem;

namespace xltune {
namespace {

class ClipSegMasks : public MaskProvider {
 public:
  ClipSegMasks(const std::string& dir, at::Device device, std::string prompt, double temperature)
      : masker_(dir, at::TensorOptions().dtype(at::kFloat).device(device)), prompt_(std::move(prompt)),
        temperature_(temperature) {}
  std::string name() const override { return "CLIPSeg '" + prompt_ + "'"; }
  GrayImage mask(const RgbImage& image, const std::string&) override {
    GrayImage g;
    g.width = image.width, g.height = image.height;
    g.pixels = masker_.mask(image.pixels.data(), image.width, image.height, prompt_, temperature_);
    return g;
  }

 private:
  ClipSegMasker masker_;
  std::string prompt_;
  double temperature_;
};

}  // namespace

LoadedPreprocessModels::~LoadedPreprocessModels() = default;

PreprocessModels LoadedPreprocessModels::view() const {
  PreprocessModels m;
  m.prompt_masks = masks.get();
  return m;
}

std::string clipseg_folder(const PreprocessOptions& o) {
  if (!o.clipseg_model.empty()) return o.clipseg_model;
  if (o.preprocess_models.empty()) return "";
  for (const char* name : {"clipseg-rd64-refined", "clipseg"})
    if (fs::is_directory(o.preprocess_models + "/" + name)) return o.preprocess_models + "/" + name;
  return "";
}

LoadedPreprocessModels load_preprocess_models(const PreprocessOptions& o, at::Device device) {
  LoadedPreprocessModels m;
  const bool prompt = o.mask_target_prompts && !o.mask_target_prompts->empty() && !o.use_face_detection_instead;
  const std::string dir = clipseg_folder(o);
  if (prompt && !dir.empty()) {
    m.masks = std::make_unique<ClipSegMasks>(dir, device, *o.mask_target_prompts, o.clipseg_temperature);
    log_info("CLIPSeg masks for '", *o.mask_target_prompts, "' from ", dir, " (temperature ", o.clipseg_temperature, ")");
  }
  return m;
}

}  // namespace xltune
