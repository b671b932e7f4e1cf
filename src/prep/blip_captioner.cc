#include "prep/blip_captioner.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/fnv1a.h"
#include "prep/hub_config.h"

namespace xltune {
namespace {

ImageProcessorConfig blip_processor_of(const std::string& dir) {
  const std::string text = read_hub_file(dir, "preprocessor_config.json", "--blip_model");
  return ImageProcessorConfig::from_json_text(text, dir + "/preprocessor_config.json");
}

}  // namespace

BlipCaptioner::BlipCaptioner(const std::string& dir, const at::TensorOptions& options,
                             const CaptionDecodingOptions& decoding)
    : dir_(dir), model_(load_blip(dir, options)), processor_(blip_processor_of(dir)),
      text_(WordPieceDecoder::from_folder(dir)), options_(options), decoding_(decoding),
      batch_size_(options.device().is_cuda() ? 8 : 1) {
  const int64_t size = model_->config().vision.image_size;
  XLTUNE_CHECK(processor_.do_resize && processor_.height == size && processor_.width == size, "--blip_model ", dir,
               ": preprocessor_config.json resizes to ", processor_.width, "x", processor_.height,
               " but the vision tower takes ", size, "x", size);
}

std::vector<std::vector<int64_t>> BlipCaptioner::token_ids(const std::vector<ImageView>& rgb,
                                                           const CaptionDecodingOptions& decoding,
                                                           const std::vector<uint64_t>& keys) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> pixels;
  for (const ImageView& image : rgb) {
    check_image(image, 3, "BLIP");
    pixels.push_back(process_image(processor_, image.pixels, image.width, image.height));
  }
  const at::Tensor embeds = model_->image_embeds(at::cat(pixels).to(options_));
  return decode_captions(model_, embeds, decoding, keys);
}

std::vector<std::string> BlipCaptioner::captions(const std::vector<ImageView>& rgb,
                                                 const CaptionDecodingOptions& decoding,
                                                 const std::vector<uint64_t>& keys) {
  std::vector<std::string> out;
  for (const auto& ids : token_ids(rgb, decoding, keys)) out.push_back(text_.decode(ids));
  return out;
}

std::vector<std::string> BlipCaptioner::captions(const std::vector<ImageView>& rgb,
                                                 const std::vector<std::string>& sample_names) {
  XLTUNE_CHECK(sample_names.size() == rgb.size(), "BLIP: ", rgb.size(), " images but ", sample_names.size(), " names");
  std::vector<uint64_t> keys;
  for (const std::string& name : sample_names) keys.push_back(fnv1a64(name));
  return captions(rgb, decoding_, keys);
}

}  // namespace xltune
