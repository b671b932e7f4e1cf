// xltune inspect FILE: every tensor of a safetensors file or sharded model, with dtype, shape
// and totals. It reads the header only (the data is mapped, never touched), so it is instant
// on a 7 GB checkpoint, and it is the quickest way to see why a model file does not load.
#include <boost/program_options.hpp>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/model_inspect.h"
#include "core/safetensors.h"
#include "core/state_dict.h"

namespace po = boost::program_options;

namespace xltune::cli {

int inspect_command(const std::vector<std::string>& args) {
  po::options_description options("Options");
  options.add_options()("help,h", "show this help")("json", "print one JSON object, for scripts")(
      "config", po::value<std::string>(), "build the model of this config.json (no weights) and list its keys")(
      "file", po::value<std::string>(), "a .safetensors file, a *.safetensors.index.json or a model folder");
  po::positional_options_description positional;
  positional.add("file", 1);
  po::variables_map vm;
  if (!parse_options(args, options, positional, vm)) {
    std::cout << usage("inspect", "FILE | MODEL_DIR | --config CONFIG.json [--json]",
                       "FILE: lists every tensor of a safetensors file (or of a model sharded over\n"
                       "several, given its index JSON): name, dtype, shape, element count; then the\n"
                       "metadata and the totals by dtype. The header is validated in full: a corrupt\n"
                       "file is named with what is wrong, and the exit status is 1.\n"
                       "--config: builds the model of a diffusers/transformers config.json (UNet, VAE,\n"
                       "CLIP text encoders) without weights and lists every key, shape and the\n"
                       "parameter count.\n"
                       "MODEL_DIR: does that for every component of an SDXL folder and checks each\n"
                       "weights file against its model (exit status 1 if a tensor is missing or\n"
                       "has the wrong shape).",
                       options);
    return 0;
  }
  if (vm.count("config")) {
    XLTUNE_USAGE_CHECK(!vm.count("file"), "give either FILE or --config, not both");
    return inspect_config(vm["config"].as<std::string>(), vm.count("json") > 0);
  }
  XLTUNE_USAGE_CHECK(vm.count("file"), "the option 'file' is required but missing (a file, a folder or --config)");
  const std::string path = vm["file"].as<std::string>();
  if (std::filesystem::is_directory(path)) return inspect_model_folder(path, vm.count("json") > 0);
  SafetensorsSet set(path);

  uint64_t total_params = 0, total_bytes = 0;
  std::map<std::string, uint64_t> params_by_dtype;
  for (const auto& name : set.names()) {
    const auto& e = set.entry(name);
    total_params += e.numel();
    total_bytes += e.nbytes();
    params_by_dtype[dtype_name(e.dtype)] += e.numel();
  }

  if (vm.count("json")) {
    nlohmann::ordered_json out;
    out["path"] = path;
    out["files"] = nlohmann::ordered_json::array();
    for (const auto& f : set.files()) out["files"].push_back({{"path", f->path()}, {"bytes", f->file_size()}});
    out["metadata"] = set.metadata();
    out["tensors"] = nlohmann::ordered_json::array();
    for (const auto& name : set.names()) {
      const auto& e = set.entry(name);
      out["tensors"].push_back({{"name", name}, {"dtype", dtype_name(e.dtype)}, {"shape", e.shape},
                                {"numel", e.numel()}, {"bytes", e.nbytes()}});
    }
    out["total_tensors"] = set.names().size();
    out["total_parameters"] = total_params;
    out["total_bytes"] = total_bytes;
    out["parameters_by_dtype"] = params_by_dtype;
    // Tensor names come from the file: replace, rather than fail on, invalid UTF-8.
    std::cout << out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
    return 0;
  }

  size_t name_width = 4;
  for (const auto& name : set.names()) name_width = std::max(name_width, name.size());
  name_width = std::min<size_t>(name_width, 80);
  for (const auto& f : set.files())
    std::cout << "file: " << f->path() << " (" << with_commas(f->file_size()) << " bytes, "
              << f->entries().size() << " tensors)\n";
  if (!set.metadata().empty()) {
    std::cout << "metadata:\n";
    for (const auto& [k, v] : set.metadata()) std::cout << "  " << k << ": " << v << "\n";
  }
  std::cout << "\n";
  for (const auto& name : set.names()) {
    const auto& e = set.entry(name);
    std::string padded = name;
    if (padded.size() < name_width) padded.resize(name_width, ' ');
    std::string dtype = dtype_name(e.dtype);
    dtype.resize(12, ' ');
    std::cout << padded << "  " << dtype << shape_text(e.shape) << "  " << with_commas(e.numel()) << "\n";
  }
  std::cout << "\ntotal: " << set.names().size() << " tensors, " << with_commas(total_params) << " parameters, "
            << with_commas(total_bytes) << " bytes\n";
  for (const auto& [dtype, n] : params_by_dtype) std::cout << "  " << dtype << ": " << with_commas(n) << "\n";
  return 0;
}

}  // namespace xltune::cli
