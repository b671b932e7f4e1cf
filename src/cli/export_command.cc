// xltune export: trained_model.tar and its files again, from a trainer state (the
// trainer_state.safetensors of a run or of any checkpoint; Note [Trainer state file]).
#include <boost/program_options.hpp>
#include <filesystem>
#include <iostream>

#include "cli/command.h"
#include "core/check.h"
#include "core/safetensors.h"
#include "job/trained_model_tar.h"
#include "models/model_loading.h"
#include "sdxl/sdxl_model.h"
#include "train/export.h"

namespace po = boost::program_options;

namespace xltune::cli {

int export_command(const std::vector<std::string>& args) {
  std::string state_path, out, model, save_dtype = "bf16";
  po::options_description options("Options");
  options.add_options()("help,h", "show this help")(
      "state", po::value<std::string>(&state_path),
      "trainer_state.safetensors (OUTPUT_DIR/ or OUTPUT_DIR/checkpoints/step-N/)")(
      "out", po::value<std::string>(&out), "folder for the files and trained_model.tar")(
      "model", po::value<std::string>(&model),
      "full fine-tuning: the base model (default: the one the state names)")(
      "save_dtype", po::value<std::string>(&save_dtype)->default_value("bf16"), "dtype of unet.safetensors");
  po::variables_map vm;
  if (!parse_options(args, options, {}, vm)) {
    std::cout << usage("export", "--state trainer_state.safetensors --out DIR [--model MODEL]",
                       "Writes lora.safetensors (or unet.safetensors), embeddings.pti, special_params.json,\n"
                       "lora_kohya.safetensors, embeddings_sdxl.safetensors and trained_model.tar from a\n"
                       "trainer state, exactly as the run that made it would have.",
                       options);
    return 0;
  }
  XLTUNE_USAGE_CHECK(!state_path.empty() && !out.empty(), "--state and --out are both needed");
  XLTUNE_USAGE_CHECK(save_dtype == "bf16" || save_dtype == "fp16" || save_dtype == "fp32", "--save_dtype '",
                     save_dtype, "': expected bf16, fp16 or fp32");
  SafetensorsFile file(state_path);
  auto meta = file.metadata().find("xltune_state");
  XLTUNE_CHECK(meta != file.metadata().end(), state_path, ": not an xltune trainer state (no xltune_state metadata)");
  NamedTensors state = load_safetensors(state_path, /*copy=*/true);
  NamedTensors base;
  if (meta->second.find("\"kind\":\"full\"") != std::string::npos) {
    TrainedWeights probe;
    const std::string from = model.empty() ? nlohmann::json::parse(meta->second).at("model").get<std::string>() : model;
    SdxlModel m = load_sdxl(from, SdxlLoadOptions{at::TensorOptions().dtype(at::kFloat), at::TensorOptions().dtype(at::kFloat),
                                                  at::TensorOptions().dtype(at::kFloat), false, true, "", ""});
    for (const auto& item : m.unet->named_parameters()) base.emplace_back(item.key(), item.value().detach());
  }
  TrainedWeights w = trained_weights_from_state(state, meta->second, base);
  const at::ScalarType dtype = save_dtype == "fp32" ? at::kFloat : save_dtype == "fp16" ? at::kHalf : at::kBFloat16;
  std::vector<std::string> files = write_export_files(w, out, dtype);
  write_trained_model_tar(out, files, out + "/" + kTrainedModelTar);
  std::cout << "wrote " << out << "/" << kTrainedModelTar << " (step " << w.step << " of " << w.max_train_steps << "):";
  for (const auto& f : files) std::cout << " " << f;
  std::cout << "\n";
  return 0;
}

}  // namespace xltune::cli
