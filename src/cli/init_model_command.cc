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
#include "cli/tiny_prep_models.h"
#include "sdxl/random_model.h"

namespace po = boost::program_options;

namespace xltune::cli {

int init_model_command(const std::vector<std::string>& args) {
  std::string preset, from_config, out;
  uint64_t seed = 0;
  po::options_description options("Options");
  options.add_options()("help,h", "show this help")(
      "preset", po::value<std::string>(&preset),
      "tiny: a training step in well under a second on 2 CPU cores; small: SDXL's shape (three levels, 64-wide "
      "heads, both encoders) at a few hundred MB; tiny-clipseg, tiny-blip, tiny-swin2sr: random preprocessing models "
      "in the hub's layout (for --clipseg_model, --blip_model, --upscaler_model)")(
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
  XLTUNE_USAGE_CHECK(preset.empty() || preset == "tiny" || preset == "small" || preset == "tiny-clipseg" ||
                         preset == "tiny-blip" || preset == "tiny-swin2sr",
                     "--preset '", preset, "': expected tiny, small, tiny-clipseg, tiny-blip or tiny-swin2sr");
  if (preset.rfind("tiny-", 0) == 0) {
    const int64_t n = preset == "tiny-clipseg" ? write_tiny_clipseg(out, seed)
                      : preset == "tiny-blip"  ? write_tiny_blip(out, seed)
                                               : write_tiny_swin2sr(out, seed);
    const char* what = preset == "tiny-clipseg" ? "CLIPSeg" : preset == "tiny-blip" ? "BLIP captioner" : "Swin2SR x4";
    std::cout << "wrote " << out << ": a random " << what << ", " << with_commas(static_cast<uint64_t>(n))
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
