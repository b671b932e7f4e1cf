// xltune preprocess: the user's images (an archive or a folder) to HDF5 shards that every rank
// of a training run reads, plus a contact sheet to look at first. The options are the seed's
// names and defaults; see data/preprocess.h for what each stage does.
#include <boost/program_options.hpp>
#include <iostream>

#include "cli/command.h"
#include "cli/option_table.h"
#include "core/check.h"
#include "data/captions.h"
#include "data/preprocess.h"
#include "job/preprocess_models.h"

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
  PreprocessOptions o;
  o.output_dir.clear();
  OptionTable main_options("Options (the seed trainer's names and defaults)");
  main_options.description().add_options()("help,h", "show this help");
  main_options.add("input_images", &o.input_images,
                   "the images: .zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz, .tar.zst, or a folder")
      .add("output_dir", &o.output_dir, "where the shards, index.json and contact_sheet.png go")
      .add("seed", &o.caption_seed, "seed of BLIP's sampled captions (the same seed, the same captions)");
  main_options.add("resolution", &o.resolution, kResolutionHelp);
  add_preprocess_options(main_options, o);
  OptionTable limits("Limits (an archive is untrusted input)");
  add_ingest_limit_options(limits, o);
  limits.description().add_options()("no_contact_sheet", "do not write contact_sheet.png")(
      "keep_work_dir", "keep the extracted files (in OUTPUT_DIR/.xltune-work-*), for debugging");
  po::options_description options;
  options.add(main_options.description()).add(limits.description());
  po::positional_options_description positional;
  po::variables_map vm;
  if (!parse_options(args, options, positional, vm)) {
    std::cout << usage("preprocess", "--input_images ARCHIVE|FOLDER --output_dir DIR [options]",
                       "Turns training images into HDF5 shards for `xltune train`: each image is decoded\n"
                       "(EXIF rotation, transparency on white), masked, cropped to a square around its\n"
                       "mask, upscaled with Swin2SR if smaller than --resolution and a model is given,\n"
                       "resized to --resolution with Lanczos and captioned (caption.csv row by file name,\n"
                       "else a .txt file beside the image, else --caption_prefix and BLIP's caption when\n"
                       "--blip_model or --preprocess_models gives one). Unusable images\n"
                       "are skipped with a warning. The set is complete when OUTPUT_DIR/index.json exists;\n"
                       "look at OUTPUT_DIR/contact_sheet.png before training.",
                       options);
    return 0;
  }
  XLTUNE_USAGE_CHECK(!o.input_images.empty(), "--input_images: expected an archive or a folder of images");
  XLTUNE_USAGE_CHECK(!o.output_dir.empty(), "--output_dir: expected a folder for the shards");
  finish_preprocess_options(o);
  try {
    validate_preprocess_options(o);
  } catch (const Error& e) {
    throw UsageError(e.what(), __FILE__, __LINE__);
  }
  o.contact_sheet = vm.count("no_contact_sheet") == 0;
  o.keep_work_dir = vm.count("keep_work_dir") > 0;

  // The preprocessing models the options ask for (CLIPSeg for --mask_target_prompts).
  const LoadedPreprocessModels models = load_preprocess_models(o, preprocess_placement("auto"));
  PreprocessReport r = preprocess(o, models.view());

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
  if (!r.buckets.empty()) {
    std::cout << "  buckets:";
    for (const auto& [bucket, n] : r.buckets) std::cout << " " << bucket << " " << n;
    std::cout << "\n";
  }
  std::cout << "  index: " << r.index_path << " (" << byte_text(static_cast<uint64_t>(r.samples) * o.resolution *
                                                                  o.resolution * 4)
            << " of pixels)\n";
  if (!r.contact_sheet_path.empty()) std::cout << "  contact sheet: " << r.contact_sheet_path << "\n";
  return 0;
}

}  // namespace xltune::cli
