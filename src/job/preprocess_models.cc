#include "job/preprocess_models.h"

#include <filesystem>
#include <sstream>

#include "core/fnv1a.h"
#include "core/log.h"
#include "prep/blip_captioner.h"
#include "prep/clipseg_masker.h"
#include "prep/swin2sr_upscaler.h"

namespace fs = std::filesystem;

namespace xltune {
namespace {

// bf16 where it is fast (a GPU); fp32 on a CPU, where bf16 matmuls are slow and parity is checked.
at::TensorOptions model_options(at::Device device) {
  return at::TensorOptions().dtype(device.is_cuda() ? at::kBFloat16 : at::kFloat).device(device);
}

std::string folder(const std::string& given, const std::string& models, std::initializer_list<const char*> names) {
  if (!given.empty()) return given;
  if (models.empty()) return "";
  for (const char* name : names)
    if (fs::is_directory(models + "/" + name)) return models + "/" + name;
  return "";
}

class ClipSegMasks : public MaskProvider {
 public:
  ClipSegMasks(const std::string& dir, at::Device device, std::string prompt, double temperature)
      : masker_(dir, model_options(device)), prompt_(std::move(prompt)),
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

// BLIP with the reference's decoding (sampling, top-k 50, temperature 0.7, 150 tokens), seeded;
// 8 images a batch on a GPU. BLIP writes lower case: the trigger word comes back as the user
// wrote it (the reference's " tok " -> " TOK ", for any --token_string).
class BlipCaptions : public Captioner {
 public:
  BlipCaptions(const std::string& dir, at::Device device, uint64_t seed, std::string token)
      : captioner_(dir, model_options(device)), token_(std::move(token)), batch_(device.is_cuda() ? 8 : 1) {
    decoding_.seed = seed;
  }
  size_t batch_size() const override { return batch_; }
  std::vector<std::string> captions(const std::vector<RgbImage>& images,
                                    const std::vector<std::string>& names) override {
    std::vector<RgbView> views;
    std::vector<uint64_t> keys;
    for (size_t i = 0; i < images.size(); ++i) {
      views.push_back({images[i].pixels.data(), images[i].width, images[i].height});
      keys.push_back(fnv1a64(names[i]));  // by name: independent of the images before it
    }
    std::vector<std::string> out;
    for (const std::string& text : captioner_.captions(views, decoding_, keys)) out.push_back(restore_trigger(text));
    return out;
  }

 private:
  std::string restore_trigger(const std::string& text) const {
    std::string lower = token_;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::istringstream words(text);
    std::string out;
    for (std::string w; words >> w;) out += (out.empty() ? "" : " ") + (!lower.empty() && w == lower ? token_ : w);
    return out;
  }
  BlipCaptioner captioner_;
  CaptionDecodingOptions decoding_;
  std::string token_;
  size_t batch_;
};

// Swin2SR x4 of the small crops, tiled (256 px tiles sharing 32: prep/swin2sr_upscaler.h).
class Swin2SrUpscales : public Upscaler {
 public:
  Swin2SrUpscales(const std::string& dir, at::Device device) : upscaler_(dir, model_options(device)) {}
  RgbImage upscale(const RgbImage& image, const std::string&) override {
    UpscaledImage up = upscaler_.upscale(image.pixels.data(), image.width, image.height);
    return RgbImage{up.width, up.height, std::move(up.rgb)};
  }

 private:
  Swin2SrUpscaler upscaler_;
};

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

LoadedPreprocessModels load_preprocess_models(const PreprocessOptions& o, at::Device device) {
  LoadedPreprocessModels m;
  const bool prompt = o.mask_target_prompts && !o.mask_target_prompts->empty() && !o.use_face_detection_instead;
  if (const std::string dir = clipseg_folder(o); prompt && !dir.empty()) {
    m.masks = std::make_unique<ClipSegMasks>(dir, device, *o.mask_target_prompts, o.clipseg_temperature);
    log_info("CLIPSeg masks for '", *o.mask_target_prompts, "' from ", dir, " (temperature ", o.clipseg_temperature, ")");
  }
  if (const std::string dir = blip_folder(o); !dir.empty()) {
    m.captioner = std::make_unique<BlipCaptions>(dir, device, o.caption_seed, o.captions.token_string);
    log_info("BLIP captions from ", dir, " (sampling, top-k 50, temperature 0.7, seed ", o.caption_seed, ")");
  }
  if (const std::string dir = upscaler_folder(o); !dir.empty()) {
    m.upscaler = std::make_unique<Swin2SrUpscales>(dir, device);
    log_info("Swin2SR upscaling of crops smaller than ", o.resolution, " px from ", dir);
  }
  return m;
}

}  // namespace xltune
