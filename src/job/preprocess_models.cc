#include "job/preprocess_models.h"

#include <filesystem>

#include "core/log.h"
#include "prep/blip_captioner.h"
#include "prep/clipseg_masker.h"
#include "prep/swin2sr_upscaler.h"

namespace fs = std::filesystem;

namespace xltune {
namespace {

std::string folder(const std::string& given, const std::string& models, std::initializer_list<const char*> names) {
  if (!given.empty()) return given;
  if (models.empty()) return "";
  for (const char* name : names)
    if (fs::is_directory(models + "/" + name)) return models + "/" + name;
  return "";
}

}  // namespace

LoadedPreprocessModels::~LoadedPreprocessModels() = default;

PreprocessModels LoadedPreprocessModels::view() const {
  PreprocessModels m;
  m.prompt_masks = masks.get();
  m.captioner = captioner.get();
  m.upscaler = upscaler.get();
  return m;
}

std::string clipseg_folder(const PreprocessOptions& o) {
  return folder(o.clipseg_model, o.preprocess_models, {"clipseg-rd64-refined", "clipseg"});
}
std::string blip_folder(const PreprocessOptions& o) {
  return folder(o.blip_model, o.preprocess_models, {"blip-image-captioning-large", "blip"});
}
std::string upscaler_folder(const PreprocessOptions& o) {
  return folder(o.upscaler_model, o.preprocess_models, {"swin2SR-realworld-sr-x4-64-bsrgan-psnr", "swin2sr"});
}

LoadedPreprocessModels load_preprocess_models(const PreprocessOptions& o, const Placement& placement) {
  LoadedPreprocessModels m;
  const at::TensorOptions model_options = placement.frozen_options();
  const bool prompt = o.mask_target_prompts && !o.mask_target_prompts->empty() && !o.use_face_detection_instead;
  if (const std::string dir = clipseg_folder(o); prompt && !dir.empty()) {
    m.masks = std::make_unique<ClipSegMasker>(dir, model_options, *o.mask_target_prompts, o.clipseg_temperature);
    log_info("CLIPSeg masks for '", *o.mask_target_prompts, "' from ", dir, " (temperature ", o.clipseg_temperature, ")");
  }
  if (const std::string dir = blip_folder(o); !dir.empty()) {
    CaptionDecodingOptions decoding;  // the reference's
    decoding.seed = o.caption_seed;
    m.captioner = std::make_unique<BlipCaptioner>(dir, model_options, decoding);
    log_info("BLIP captions from ", dir, " (sampling, top-k 50, temperature 0.7, seed ", o.caption_seed, ")");
  }
  if (const std::string dir = upscaler_folder(o); !dir.empty()) {
    m.upscaler = std::make_unique<Swin2SrUpscaler>(dir, model_options);
    log_info("Swin2SR upscaling of crops smaller than ", o.resolution, " px from ", dir);
  }
  return m;
}

}  // namespace xltune
