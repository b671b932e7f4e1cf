#include "cli/tiny_prep_models.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/atomic_file.h"
#include "core/data_files.h"
#include "core/safetensors.h"
#include "prep/blip.h"
#include "prep/clipseg.h"
#include "prep/swin2sr.h"
#include "sdxl/random_model.h"
#include "text/clip_tokenizer.h"

namespace xltune::cli {
namespace {

// The module's parameters as model.safetensors; their count.
int64_t save_parameters(const torch::nn::Module& model, const std::string& path) {
  NamedTensors state;
  int64_t n = 0;
  for (const auto& item : model.named_parameters()) {
    state.emplace_back(item.key(), item.value().detach());
    n += item.value().numel();
  }
  save_safetensors(path, state, {{"format", "pt"}});
  return n;
}

// A small BERT WordPiece vocabulary for the tiny BLIP: BERT's special tokens first, as in
// bert-base-uncased, then caption words, punctuation and continuations, then BLIP's [DEC] (bos)
// and [ENC].
const char* const kTinyBlipWords[] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "'", "-", "s", "a", "an", "the", "of", "on", "in",
    "with", "and", "is", "at", "by", "to", "two", "three", "photo", "picture", "close", "up", "view", "man", "woman",
    "person", "cat", "dog", "cup", "mug", "coffee", "table", "chair", "sofa", "bed", "floor", "wall", "window",
    "grass", "tree", "sky", "water", "street", "car", "red", "blue", "green", "white", "black", "brown", "small",
    "large", "wooden", "sitting", "standing", "lying", "looking", "holding", "front", "top", "next", "background",
    "##s", "##ing", "##ed", "##er", "##y", "##ly", "[DEC]", "[ENC]"};

}  // namespace

// A tiny random CLIPSeg in the hub's layout (config.json, model.safetensors,
// preprocessor_config.json, the CLIP tokenizer files): the refined model's architecture at
// 64 px, for tests and the quickstart's prompt masks.
int64_t write_tiny_clipseg(const std::string& out, uint64_t seed) {
  const nlohmann::json config = {
      {"architectures", {"CLIPSegForImageSegmentation"}},
      {"model_type", "clipseg"},
      {"projection_dim", 24},
      {"reduce_dim", 16},
      {"extract_layers", {1, 2, 3}},
      {"conditional_layer", 0},
      {"decoder_num_attention_heads", 2},
      {"decoder_intermediate_size", 32},
      {"use_complex_transposed_convolution", true},
      {"text_config",
       {{"hidden_size", 32}, {"intermediate_size", 48}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
        {"vocab_size", 49408}, {"max_position_embeddings", 77}, {"hidden_act", "quick_gelu"}}},
      {"vision_config",
       {{"hidden_size", 48}, {"intermediate_size", 64}, {"num_hidden_layers", 4}, {"num_attention_heads", 4},
        {"image_size", 64}, {"patch_size", 16}, {"hidden_act", "quick_gelu"}}}};
  const nlohmann::json processor = {{"image_processor_type", "ViTImageProcessor"},
                                    {"do_resize", true},
                                    {"size", {{"height", 64}, {"width", 64}}},
                                    {"resample", 2},
                                    {"do_rescale", true},
                                    {"rescale_factor", 1.0 / 255},
                                    {"do_normalize", true},
                                    {"image_mean", {0.485, 0.456, 0.406}},
                                    {"image_std", {0.229, 0.224, 0.225}}};
  std::filesystem::create_directories(out);
  ClipSeg model(ClipSegConfig::from_json_text(config.dump(), "tiny-clipseg"), at::TensorOptions().dtype(at::kFloat));
  randomize_module(*model, "clipseg", seed);
  {
    // Logits of a few units rather than tenths, so that a prompt's mask visibly varies.
    at::NoGradGuard no_grad;
    for (const auto& item : model->named_parameters())
      if (item.key().find("transposed_convolution") != std::string::npos || item.key().find("film") != std::string::npos)
        item.value().mul_(4.0);
  }
  ClipTokenizer::from_bpe_file(clip_vocabulary_file(), "<|endoftext|>").write_folder(out);
  write_file_atomic(out + "/config.json", config.dump(2) + "\n");
  write_file_atomic(out + "/preprocessor_config.json", processor.dump(2) + "\n");
  return save_parameters(*model, out + "/model.safetensors");
}


// A tiny random BLIP captioner: blip-image-captioning-large's architecture (ViT, BERT decoder
// with cross-attention) at 64 px, with room for the reference's 150-token captions.
int64_t write_tiny_blip(const std::string& out, uint64_t seed) {
  std::ostringstream vocab;
  int64_t words = 0;
  for (const char* w : kTinyBlipWords) vocab << w << "\n", ++words;
  const nlohmann::json config = {
      {"architectures", {"BlipForConditionalGeneration"}},
      {"model_type", "blip"},
      {"text_config",
       {{"vocab_size", words}, {"hidden_size", 32}, {"intermediate_size", 48}, {"num_hidden_layers", 2},
        {"num_attention_heads", 4}, {"max_position_embeddings", 160}, {"hidden_act", "gelu"},
        {"bos_token_id", words - 2}, {"pad_token_id", 0}, {"sep_token_id", 3}, {"eos_token_id", 2}}},
      {"vision_config",
       {{"hidden_size", 32}, {"intermediate_size", 48}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
        {"image_size", 64}, {"patch_size", 16}, {"hidden_act", "gelu"}}}};
  const nlohmann::json processor = {{"image_processor_type", "BlipImageProcessor"},
                                    {"do_resize", true},
                                    {"size", {{"height", 64}, {"width", 64}}},
                                    {"resample", 3},
                                    {"do_rescale", true},
                                    {"rescale_factor", 1.0 / 255},
                                    {"do_normalize", true},
                                    {"do_convert_rgb", true},
                                    {"image_mean", {0.48145466, 0.4578275, 0.40821073}},
                                    {"image_std", {0.26862954, 0.26130258, 0.27577711}}};
  const nlohmann::json tokenizer = {{"tokenizer_class", "BertTokenizer"}, {"do_lower_case", true},
                                    {"bos_token", "[DEC]"}, {"cls_token", "[CLS]"}, {"sep_token", "[SEP]"},
                                    {"pad_token", "[PAD]"}, {"unk_token", "[UNK]"}, {"mask_token", "[MASK]"},
                                    {"extra_special_tokens", {"[ENC]"}}, {"model_max_length", 512}};
  std::filesystem::create_directories(out);
  Blip model(BlipConfig::from_json_text(config.dump(), "tiny-blip"), at::TensorOptions().dtype(at::kFloat));
  randomize_module(*model, "blip", seed);
  {
    // [SEP] likelier than the random weights make it, so that captions end after a few words
    // rather than at max_length.
    at::NoGradGuard no_grad;
    model->output_bias[3] += 2.0;
  }
  write_file_atomic(out + "/vocab.txt", vocab.str());
  write_file_atomic(out + "/tokenizer_config.json", tokenizer.dump(2) + "\n");
  write_file_atomic(out + "/config.json", config.dump(2) + "\n");
  write_file_atomic(out + "/preprocessor_config.json", processor.dump(2) + "\n");
  return save_parameters(*model, out + "/model.safetensors");
}


// A tiny random Swin2SR x4: swin2SR-realworld-sr-x4-64-bsrgan-psnr's architecture (window 8,
// "1conv" residual groups, the nearest+conv head) with 16 features in two groups of two layers.
// Its head still works at 64 features and 4x the size: about 2.7 MFLOP per input pixel, so the
// tests and the quickstart give it small crops only.
int64_t write_tiny_swin2sr(const std::string& out, uint64_t seed) {
  const nlohmann::json config = {{"architectures", {"Swin2SRForImageSuperResolution"}},
                                 {"model_type", "swin2sr"},
                                 {"embed_dim", 16},
                                 {"depths", {2, 2}},
                                 {"num_heads", {2, 2}},
                                 {"window_size", 8},
                                 {"image_size", 64},
                                 {"patch_size", 1},
                                 {"num_channels", 3},
                                 {"num_channels_out", 3},
                                 {"mlp_ratio", 2.0},
                                 {"qkv_bias", true},
                                 {"hidden_act", "gelu"},
                                 {"layer_norm_eps", 1e-5},
                                 {"upscale", 4},
                                 {"img_range", 1.0},
                                 {"resi_connection", "1conv"},
                                 {"upsampler", "nearest+conv"},
                                 {"use_absolute_embeddings", false}};
  const nlohmann::json processor = {{"image_processor_type", "Swin2SRImageProcessor"},
                                    {"do_pad", true},
                                    {"do_rescale", true},
                                    {"rescale_factor", 1.0 / 255},
                                    {"size_divisor", 8}};
  std::filesystem::create_directories(out);
  Swin2Sr model(Swin2SrConfig::from_json_text(config.dump(), "tiny-swin2sr"), at::TensorOptions().dtype(at::kFloat));
  randomize_module(*model, "swin2sr", seed);
  {
    // Cosine attention's learnt temperature as trained models start it (log 10), not noise.
    at::NoGradGuard no_grad;
    for (const auto& item : model->named_parameters())
      if (item.key().find("logit_scale") != std::string::npos) item.value().fill_(std::log(10.0));
  }
  write_file_atomic(out + "/config.json", config.dump(2) + "\n");
  write_file_atomic(out + "/preprocessor_config.json", processor.dump(2) + "\n");
  return save_parameters(*model, out + "/model.safetensors");
}

}  // namespace xltune::cli
