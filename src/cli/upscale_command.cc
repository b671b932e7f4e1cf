// xltune upscale: the Swin2SR upscaling of one image (prep/swin2sr_upscaler.h), as preprocessing
// applies it to crops smaller than --resolution: for looking at, and for checking.
#include <boost/program_options.hpp>
#include <iostream>

#include "cli/command.h"
#include "core/atomic_file.h"
#include "core/check.h"
#include "data/image_codec.h"
#include "data/image_convert.h"
#include "data/image_decode.h"
#include "prep/swin2sr_upscaler.h"

namespace po = boost::program_options;

namespace xltune::cli {

int upscale_command(const std::vector<std::string>& args) {
  int repeat = 1;
  std::string model, image, out, device = "auto";
  int tile = 256, overlap = 32;
  po::options_description options("Options");
  options.add_options()("help,h", "show this help")(
      "upscaler_model", po::value<std::string>(&model),
      "Swin2SR folder (as the hub ships caidas/swin2SR-realworld-sr-x4-64-bsrgan-psnr)")(
      "image", po::value<std::string>(&image), "the image (also the first positional argument)")(
      "out", po::value<std::string>(&out), "the PNG to write (the model's upscale x the image's size)")(
      "tile", po::value<int>(&tile)->default_value(256), "input pixels per tile side; 0: the whole image at once")(
      "overlap", po::value<int>(&overlap)->default_value(32),
      "input pixels that neighbouring tiles share (the middle half blended)")(
      "device", po::value<std::string>(&device)->default_value("auto"), "auto, cpu, cuda or cuda:N")(
      "repeat", po::value<int>(&repeat)->default_value(1), "compute N times and report the fastest (for timing)");
  po::positional_options_description positional;
  positional.add("image", 1);
  po::variables_map vm;
  if (!parse_options(args, options, positional, vm)) {
    std::cout << usage("upscale", "--upscaler_model DIR IMAGE --out PNG [--tile N] [--overlap N]",
                       "Writes the image upscaled by Swin2SR as preprocessing upscales crops smaller than the\n"
                       "resolution (Replicate's trainer: x / 255, a symmetric pad to a multiple of 8, the model,\n"
                       "clamp, * 255, rounded), with the pad cropped off: exactly upscale x the image. Large\n"
                       "images go through in tiles.",
                       options);
    return 0;
  }
  XLTUNE_USAGE_CHECK(!model.empty(), "--upscaler_model: expected a Swin2SR folder");
  XLTUNE_USAGE_CHECK(!image.empty() && !out.empty(), "an IMAGE and --out PNG are both needed");
  XLTUNE_USAGE_CHECK(tile >= 0, "--tile: expected 0 (untiled) or a number of pixels, got ", tile);
  XLTUNE_USAGE_CHECK(overlap >= 0 && (tile == 0 || overlap < tile), "--overlap ", overlap,
                     ": expected 0 or more pixels, fewer than --tile ", tile);
  XLTUNE_USAGE_CHECK(repeat >= 1, "--repeat: expected at least 1, got ", repeat);
  const DecodedImage decoded = decode_image_file(image, image);
  Swin2SrUpscaler upscaler(model, preprocess_placement(device).frozen_options());
  upscaler.set_tiling(tile, overlap);
  Image up;
  const double seconds = fastest_of(repeat, [&] { up = upscaler.upscale(image_view(decoded.rgb), image); });
  write_file_atomic(out, encode_png(mat_view(up), ChannelOrder::kRgb));
  std::cout << "wrote " << out << " (" << up.width << "x" << up.height << " from " << decoded.rgb.cols << "x"
            << decoded.rgb.rows << ", x" << upscaler.scale() << "; "
            << (tile == 0 ? std::string("untiled") : "tiles " + std::to_string(tile) + ", overlap " +
                                                         std::to_string(overlap))
            << "; " << seconds << " s computing)\n";
  return 0;
}

}  // namespace xltune::cli
