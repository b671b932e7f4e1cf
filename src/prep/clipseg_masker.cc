#include "prep/clipseg_masker.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <filesystem>

#include "core/atomic_file.h"
#include "core/check.h"
#include "prep/hub_config.h"
#include "core/pil_resample.h"

namespace fs = std::filesystem;

namespace xltune {
namespace {

ClipTokenizer tokenizer_of(const std::string& dir) {
  XLTUNE_CHECK(fs::is_regular_file(dir + "/vocab.json") && fs::is_regular_file(dir + "/merges.txt"), "--clipseg_model ",
               dir, ": no vocab.json and merges.txt (the CLIP tokenizer files the hub folder has)");
  return ClipTokenizer::from_folder(dir);
}

ImageProcessorConfig clipseg_processor_of(const std::string& dir) {
  const std::string text = read_hub_file(dir, "preprocessor_config.json", "--clipseg_model");
  return ImageProcessorConfig::from_json_text(text, dir + "/preprocessor_config.json");
}

}  // namespace

ClipSegMasker::ClipSegMasker(const std::string& dir, const at::TensorOptions& options, std::string prompt,
                             double temperature)
    : dir_(dir),
      model_(load_clipseg(dir, options)),
      tokenizer_(tokenizer_of(dir)),
      processor_(clipseg_processor_of(dir)),
      options_(options), prompt_(std::move(prompt)), temperature_(temperature) {
  XLTUNE_CHECK(temperature_ > 0, "--clipseg_temperature: expected a positive number, got ", temperature_);
}

at::Tensor ClipSegMasker::logits(ImageView rgb, const std::string& prompt) {
  check_image(rgb, 3, "CLIPSeg");
  torch::NoGradGuard no_grad;
  at::Tensor pixels = process_image(processor_, rgb.pixels, rgb.width, rgb.height).to(options_);
  const size_t length = static_cast<size_t>(model_->config().text.max_position_embeddings);
  std::vector<int64_t> ids = tokenizer_.encode(prompt, length), empty = tokenizer_.encode("", length);
  ids.insert(ids.end(), empty.begin(), empty.end());
  at::Tensor batch = at::tensor(ids, at::TensorOptions().dtype(at::kLong)).view({2, -1}).to(options_.device());
  return model_->forward(pixels.repeat({2, 1, 1, 1}), batch).to(at::kFloat).cpu();
}

Image ClipSegMasker::mask(ImageView rgb, const std::string&) {
  at::Tensor l = logits(rgb, prompt_);
  const std::vector<uint8_t> small = clipseg_mask_from_logits(l, temperature_);
  // PIL's Image.resize default for an "L" image: bicubic.
  Image out{rgb.width, rgb.height, 1, {}};
  out.pixels = pil_resize(small.data(), static_cast<int>(l.size(2)), static_cast<int>(l.size(1)), 1, rgb.width,
                          rgb.height, PilFilter::kBicubic);
  return out;
}

}  // namespace xltune
