// xltune preprocess: the user's images (an archive or a folder) to HDF5 shards that every rank
// of a training run reads, plus a contact sheet to look at first. The options are the seed's
// names and defaults; see data/preprocess.h for what each stage does.
#include <boost/program_options.hpp>
#include <iostream>

#include "cli/command.h"
#include "core/check.h"
#include "data/captions.h"
#include "data/preprocess.h"

namespace po = boost::program_options;

namespace xltune::cli {

namespace {
std::string byte_text(uint64_t n) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  std::ostringstream out;
  out.precision(u == 0 ? 0 : 1);
  out << std::fixed << v << " " << units[u];
  return out.str();
}
}  // namespace

int preprocess_command(const std::vector<std::string>& args) {
  PreprocessOptions defaults;
  po::options_description main_options("Options (the seed trainer's names and defaults)");
  main_options.add_options()("help,h", "show this help")(
      "input_images", po::value<std::string>()->required(),
      "the images: .zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz, .tar.zst, or a folder")(
      "output_dir", po::value<std::string>()->required(), "where the shards, index.json and contact_sheet.png go")(
      "resolution", po::value<int>()->default_value(defaults.resolution), "side of the square training images, in pixels")(
      "caption_prefix", po::value<std::string>()->default_value(defaults.captions.caption_prefix),
      "caption of images without a caption.csv row or .txt file; should contain the token string")(
      "token_string", po::value<std::string>()->default_value(defaults.captions.token_string),
      "the trigger word; replaced (as a whole word) by the new tokens <s0><s1> in captions")(
      "mask_target_prompts", po::value<std::string>(),
      "what matters in the images, for CLIPSeg masks (not available yet: an error)")(
      "crop_based_on_salience", po::value<bool>()->default_value(defaults.crop_based_on_salience, "true"),
      "true: crop around the mask's centre of mass; false: centre crop")(
      "use_face_detection_instead", po::value<bool>()->default_value(defaults.use_face_detection_instead, "false"),
      "true: masks from face detection (OpenCV Haar cascade)")(
      "clipseg_temperature", po::value<double>()->default_value(1.0), "CLIPSeg softmax temperature (for CLIPSeg masks)")(
      "max_images", po::value<uint64_t>()->default_value(0), "use only the first N images by name (0: all)");
  po::options_description limits("Limits (an archive is untrusted input)");
  limits.add_options()("max_entries", po::value<uint64_t>()->default_value(defaults.ingest_limits.max_entries),
                       "most entries an archive or folder may have")(
      "max_unpacked_bytes", po::value<uint64_t>()->default_value(defaults.ingest_limits.max_unpacked_bytes),
      "most bytes unpacked from an archive in all (stops zip bombs)")(
      "max_file_bytes", po::value<uint64_t>()->default_value(defaults.ingest_limits.max_file_bytes),
      "largest image file")(
      "max_image_pixels", po::value<uint64_t>()->default_value(defaults.decode_limits.max_image_pixels),
      "largest image (width x height), checked before decoding")(
      "max_shard_bytes", po::value<uint64_t>()->default_value(defaults.max_shard_bytes), "size of one HDF5 shard")(
      "no_contact_sheet", "do not write contact_sheet.png")(
      "keep_work_dir", "keep the extracted files (in OUTPUT_DIR/.xltune-work-*), for debugging");
  po::options_description options;
  options.add(main_options).add(limits);
  po::positional_options_description positional;
  po::variables_map vm;
  if (!parse_options(args, options, positional, vm)) {
    std::cout << usage("preprocess", "--input_images ARCHIVE|FOLDER --output_dir DIR [options]",
                       "Turns training images into HDF5 shards for `xltune train`: each image is decoded\n"
                       "(EXIF rotation, transparency on white), masked, cropped to a square around its\n"
                       "mask, resized to --resolution with Lanczos and captioned (caption.csv row by file\n"
                       "name, else a .txt file beside the image, else --caption_prefix). Unusable images\n"
                       "are skipped with a warning. The set is complete when OUTPUT_DIR/index.json exists;\n"
                       "look at OUTPUT_DIR/contact_sheet.png before training.",
                       options);
    return 0;
  }

  PreprocessOptions o;
  o.input_images = vm["input_images"].as<std::string>();
  o.output_dir = vm["output_dir"].as<std::string>();
  o.resolution = vm["resolution"].as<int>();
  XLTUNE_USAGE_CHECK(o.resolution >= 64 && o.resolution <= 4096 && o.resolution % 8 == 0,
                     "--resolution: expected a multiple of 8 from 64 to 4096 (the VAE works in 8-pixel blocks), got ",
                     o.resolution);
  o.captions.caption_prefix = vm["caption_prefix"].as<std::string>();
  o.captions.token_string = vm["token_string"].as<std::string>();
  XLTUNE_USAGE_CHECK(!o.captions.token_string.empty() &&
                         o.captions.token_string.find_first_of(" \t\r\n") == std::string::npos,
                     "--token_string: expected one word such as TOK, got '", o.captions.token_string, "'");
  if (vm.count("mask_target_prompts")) o.mask_target_prompts = vm["mask_target_prompts"].as<std::string>();
  o.crop_based_on_salience = vm["crop_based_on_salience"].as<bool>();
  o.use_face_detection_instead = vm["use_face_detection_instead"].as<bool>();
  XLTUNE_USAGE_CHECK(vm["clipseg_temperature"].as<double>() > 0, "--clipseg_temperature: expected a positive number");
  o.max_images = vm["max_images"].as<uint64_t>();
  o.ingest_limits.max_entries = vm["max_entries"].as<uint64_t>();
  o.ingest_limits.max_unpacked_bytes = vm["max_unpacked_bytes"].as<uint64_t>();
  o.ingest_limits.max_file_bytes = vm["max_file_bytes"].as<uint64_t>();
  o.decode_limits.max_file_bytes = o.ingest_limits.max_file_bytes;
  o.decode_limits.max_image_pixels = vm["max_image_pixels"].as<uint64_t>();
  o.max_shard_bytes = vm["max_shard_bytes"].as<uint64_t>();
  XLTUNE_USAGE_CHECK(o.max_shard_bytes >= uint64_t{4} * o.resolution * o.resolution, "--max_shard_bytes: ",
                     o.max_shard_bytes, " cannot hold one sample at --resolution ", o.resolution);
  o.contact_sheet = vm.count("no_contact_sheet") == 0;
  o.keep_work_dir = vm.count("keep_work_dir") > 0;

  // No model plug-ins yet (CLIPSeg, BLIP, Swin2SR come with the prep part).
  PreprocessReport r = preprocess(o);

  std::ostringstream seconds;
  seconds.precision(1);
  seconds << std::fixed << r.seconds;
  std::cout << "preprocessed " << r.samples << " of " << r.images_found << " images into " << o.output_dir << " in "
            << seconds.str() << " s\n";
  if (r.skipped_images > 0) std::cout << "  skipped: " << r.skipped_images << " (see the warnings above)\n";
  std::cout << "  captions:";
  for (const auto& [source, n] : r.caption_sources) std::cout << " " << caption_source_name(source) << " " << n;
  std::cout << "\n";
  if (o.use_face_detection_instead) std::cout << "  faces found in " << r.faces << " images\n";
  std::cout << "  index: " << r.index_path << " (" << byte_text(static_cast<uint64_t>(r.samples) * o.resolution *
                                                                  o.resolution * 4)
            << " of pixels)\n";
  if (!r.contact_sheet_path.empty()) std::cout << "  contact sheet: " << r.contact_sheet_path << "\n";
  return 0;
}

}  // namespace xltune::cli
