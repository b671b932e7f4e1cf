// xltune init-model: a random SDXL-shaped diffusers folder that diffusers and transformers load
// (tests, the quickstart, benchmarks). Same configs and seed, same bytes.
#include <boost/program_options.hpp>
#include <filesystem>
#include <iostream>

#include "cli/command.h"
#include "core/check.h"
#include "core/data_files.h"
#include "text/clip_tokenizer.h"
#include "core/atomic_file.h"
#include "core/safetensors.h"
#include "prep/clipseg.h"
#include "train/random_model.h"

namespace po = boost::program_options;

namespace xltune::cli {

namespace {

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
  NamedTensors state;
  int64_t n = 0;
  for (const auto& item : model->named_parameters()) {
    state.emplace_back(item.key(), item.value().detach());
    n += item.value().numel();
  }
  ClipTokenizer::from_bpe_file(clip_vocabulary_file(), "<|endoftext|>").write_folder(out);
  write_file_atomic(out + "/config.json", config.dump(2) + "\n");
  write_file_atomic(out + "/preprocessor_config.json", processor.dump(2) + "\n");
  save_safetensors(out + "/model.safetensors", state, {{"format", "pt"}});
  return n;
}

}  // namespace

int init_model_command(const std::vector<std::string>& args) {
  std::string preset, from_config, out;
  uint64_t seed = 0;
  po::options_description options("Options");
  options.add_options()("help,h", "show this help")(
      "preset", po::value<std::string>(&preset),
      "tiny: a training step in well under a second on 2 CPU cores; small: SDXL's shape (three levels, 64-wide "
      "heads, both encoders) at a few hundred MB; tiny-clipseg: a random CLIPSeg folder (for --clipseg_model)")(
      "from-config", po::value<std::string>(&from_config),
      "a folder with unet/, vae/, text_encoder/, text_encoder_2/ config.json (and scheduler/): random weights for "
      "those configs")("out", po::value<std::string>(&out), "the model folder to write")(
      "seed", po::value<uint64_t>(&seed)->default_value(0), "random seed of the weights");
  po::variables_map vm;
  if (!parse_options(args, options, {}, vm)) {
    std::cout << usage("init-model", "--preset tiny|small --out DIR [--seed N]  |  --from-config DIR --out DIR",
                       "Writes a diffusers SDXL folder (model_index.json, unet, vae, text_encoder,\n"
                       "text_encoder_2, tokenizer, tokenizer_2 with the real CLIP vocabulary, scheduler)\n"
                       "with random fp32 weights. The same options write the same bytes.",
                       options);
    return 0;
  }
  XLTUNE_USAGE_CHECK(preset.empty() != from_config.empty(), "give one of --preset tiny|small and --from-config DIR");
  XLTUNE_USAGE_CHECK(!out.empty(), "--out: expected the folder to write the model into");
  XLTUNE_USAGE_CHECK(preset.empty() || preset == "tiny" || preset == "small" || preset == "tiny-clipseg", "--preset '",
                     preset, "': expected tiny, small or tiny-clipseg");
  if (preset == "tiny-clipseg") {
    const int64_t n = write_tiny_clipseg(out, seed);
    std::cout << "wrote " << out << ": a random CLIPSeg, " << with_commas(static_cast<uint64_t>(n))
              << " parameters (seed " << seed << ")\n";
    return 0;
  }
  ModelConfigSet configs = preset.empty() ? configs_from_folder(from_config) : preset_configs(preset);
  const std::string vocab = clip_vocabulary_file();
  // Tokenizers first (they need the vocabulary, the most likely thing to be missing), model last.
  ClipTokenizer::from_bpe_file(vocab, "<|endoftext|>").write_folder(out + "/tokenizer");
  ClipTokenizer::from_bpe_file(vocab, "!").write_folder(out + "/tokenizer_2");
  const int64_t n = write_random_model(out, configs, seed);
  uint64_t bytes = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(out))
    if (e.is_regular_file()) bytes += e.file_size();
  std::cout << "wrote " << out << ": " << with_commas(static_cast<uint64_t>(n)) << " parameters, "
            << with_commas(bytes) << " bytes (" << (preset.empty() ? "configs of " + from_config : "preset " + preset)
            << ", seed " << seed << ")\n";
  return 0;
}

}  // namespace xltune::cli
