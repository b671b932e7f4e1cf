// xltune caption: BLIP captions of images (prep/blip_captioner.h), as preprocessing writes them
// for photos without a CSV row or .txt sidecar: for looking at, and for checking.
#include <boost/program_options.hpp>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/check.h"
#include "data/image_convert.h"
#include "data/image_decode.h"
#include "prep/blip_captioner.h"

namespace po = boost::program_options;

namespace xltune::cli {

int caption_command(const std::vector<std::string>& args) {
  std::string model, decoding = "sample", device = "auto";
  std::vector<std::string> images;
  CaptionDecodingOptions o;
  int64_t seed = 0;
  bool json = false;
  po::options_description options("Options");
  options.add_options()("help,h", "show this help")(
      "blip_model", po::value<std::string>(&model),
      "BLIP folder (as the hub ships Salesforce/blip-image-captioning-large)")(
      "decoding", po::value<std::string>(&decoding)->default_value("sample"),
      "sample (the reference trainer's), greedy or beam")(
      "num_beams", po::value<int64_t>(&o.num_beams)->default_value(3), "beams, with --decoding beam")(
      "top_k", po::value<int64_t>(&o.top_k)->default_value(50), "sampling: draw among the K most likely tokens")(
      "temperature", po::value<double>(&o.temperature)->default_value(0.7, "0.7"),
      "sampling: divides the logits; lower is more predictable")(
      "max_length", po::value<int64_t>(&o.max_length)->default_value(150), "at most this many tokens per caption")(
      "seed", po::value<int64_t>(&seed)->default_value(0),
      "sampling: the same seed and image give the same caption")(
      "json", po::bool_switch(&json), "print one JSON object per image: image, caption, token ids")(
      "device", po::value<std::string>(&device)->default_value("auto"), "auto, cpu, cuda or cuda:N")(
      "image", po::value<std::vector<std::string>>(&images), "images (also the positional arguments)");
  po::positional_options_description positional;
  positional.add("image", -1);
  po::variables_map vm;
  if (!parse_options(args, options, positional, vm)) {
    std::cout << usage("caption", "--blip_model DIR [options] IMAGE...",
                       "Prints a BLIP caption for each image, as preprocessing makes them for photos that have\n"
                       "no caption (Replicate's trainer: sampling with top-k 50 and temperature 0.7, at most 150\n"
                       "tokens; here seeded, so that a run repeats). Image i's draws are keyed by its position.",
                       options);
    return 0;
  }
  XLTUNE_USAGE_CHECK(!model.empty(), "--blip_model: expected a BLIP folder");
  XLTUNE_USAGE_CHECK(!images.empty(), "expected at least one IMAGE");
  XLTUNE_USAGE_CHECK(decoding == "sample" || decoding == "greedy" || decoding == "beam", "--decoding '", decoding,
                     "': expected sample, greedy or beam");
  o.decoding = parse_caption_decoding(decoding, "--decoding");
  XLTUNE_USAGE_CHECK(o.num_beams >= 1, "--num_beams: expected at least 1, got ", o.num_beams);
  XLTUNE_USAGE_CHECK(o.top_k >= 1, "--top_k: expected at least 1, got ", o.top_k);
  XLTUNE_USAGE_CHECK(o.temperature > 0, "--temperature: expected a positive number, got ", o.temperature);
  XLTUNE_USAGE_CHECK(o.max_length >= 2, "--max_length: expected at least 2 (the start token and one more), got ",
                     o.max_length);
  XLTUNE_USAGE_CHECK(seed >= 0, "--seed: expected a non-negative number, got ", seed);
  o.seed = static_cast<uint64_t>(seed);
  std::vector<DecodedImage> decoded;
  for (const std::string& path : images) decoded.push_back(decode_image_file(path, path));
  BlipCaptioner captioner(model, preprocess_placement(device).frozen_options());
  for (size_t i = 0; i < decoded.size(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    const std::vector<int64_t> ids = captioner.token_ids({image_view(decoded[i].rgb)}, o, {i})[0];
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::string text = captioner.text().decode(ids);
    if (json) {
      std::cout << nlohmann::json{{"image", images[i]}, {"caption", text}, {"token_ids", ids}, {"seconds", seconds}}.dump()
                << "\n";
    } else {
      std::cout << images[i] << ": " << text << "\n";
    }
  }
  return 0;
}

}  // namespace xltune::cli
