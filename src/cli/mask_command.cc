// xltune mask: the reference trainer's CLIPSeg mask of one image for a prompt (prep/clipseg.h),
// as preprocessing computes it for --mask_target_prompts: for looking at, and for checking.
#include <boost/program_options.hpp>
#include <iostream>

#include "cli/command.h"
#include "core/atomic_file.h"
#include "core/check.h"
#include "data/image_codec.h"
#include "data/image_convert.h"
#include "data/image_decode.h"
#include "prep/clipseg_masker.h"

namespace po = boost::program_options;

namespace xltune::cli {

int mask_command(const std::vector<std::string>& args) {
  int repeat = 1;
  std::string model, prompt, image, out, device = "auto";
  double temperature = 1.0;
  po::options_description options("Options");
  options.add_options()("help,h", "show this help")(
      "clipseg_model", po::value<std::string>(&model), "CLIPSeg folder (as the hub ships CIDAS/clipseg-rd64-refined)")(
      "prompt", po::value<std::string>(&prompt), "what to find in the image")(
      "clipseg_temperature", po::value<double>(&temperature)->default_value(1.0),
      "softmax temperature against the empty prompt: lower is sharper")(
      "image", po::value<std::string>(&image), "the image (also the first positional argument)")(
      "out", po::value<std::string>(&out), "the mask PNG to write (8-bit grey, the image's size)")(
      "device", po::value<std::string>(&device)->default_value("auto"), "auto, cpu, cuda or cuda:N")(
      "repeat", po::value<int>(&repeat)->default_value(1), "compute N times and report the fastest (for timing)");
  po::positional_options_description positional;
  positional.add("image", 1);
  po::variables_map vm;
  if (!parse_options(args, options, positional, vm)) {
    std::cout << usage("mask", "--clipseg_model DIR --prompt TEXT IMAGE --out MASK.png",
                       "Writes the mask that --mask_target_prompts gives an image: CLIPSeg's logits for the\n"
                       "prompt against the empty prompt, softmax with the temperature, +0.01, scaled to 255\n"
                       "at its maximum, resized to the image (as Replicate's trainer computes it).",
                       options);
    return 0;
  }
  XLTUNE_USAGE_CHECK(!model.empty(), "--clipseg_model: expected a CLIPSeg folder");
  XLTUNE_USAGE_CHECK(!prompt.empty(), "--prompt: expected what to find in the image");
  XLTUNE_USAGE_CHECK(!image.empty() && !out.empty(), "an IMAGE and --out MASK.png are both needed");
  XLTUNE_USAGE_CHECK(temperature > 0, "--clipseg_temperature: expected a positive number, got ", temperature);
  XLTUNE_USAGE_CHECK(repeat >= 1, "--repeat: expected at least 1, got ", repeat);
  const DecodedImage decoded = decode_image_file(image, image);
  ClipSegMasker masker(model, preprocess_placement(device).frozen_options(), prompt,
                       temperature);
  Image m;
  const double seconds = fastest_of(repeat, [&] { m = masker.mask(image_view(decoded.rgb), image); });
  write_file_atomic(out, encode_png(mat_view(m), ChannelOrder::kRgb));
  std::cout << "wrote " << out << " (" << decoded.rgb.cols << "x" << decoded.rgb.rows << ", '" << prompt << "'; "
            << seconds << " s computing)\n";
  return 0;
}

}  // namespace xltune::cli
