#include "cli/model_inspect.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/atomic_file.h"
#include "core/check.h"
#include "core/layers.h"
#include "core/safetensors.h"
#include "core/state_dict.h"
#include "models/unet.h"
#include "models/vae.h"
#include "text/clip_loading.h"

namespace fs = std::filesystem;

namespace xltune::cli {

namespace {

nlohmann::ordered_json describe(const BuiltModel& m) {
  nlohmann::ordered_json out;
  out["kind"] = m.kind;
  out["parameters"] = nn::parameter_count(*m.module);
  out["tensors"] = nlohmann::ordered_json::array();
  for (const auto& p : m.module->named_parameters())
    out["tensors"].push_back({p.key(), std::vector<int64_t>(p.value().sizes().begin(), p.value().sizes().end())});
  return out;
}

void print_model(const BuiltModel& m, const std::string& title) {
  std::cout << title << ": " << m.kind << ", " << with_commas(nn::parameter_count(*m.module)) << " parameters in "
            << m.module->named_parameters().size() << " tensors\n";
  for (const auto& p : m.module->named_parameters())
    std::cout << "  " << p.key() << "  " << shape_text(p.value().sizes()) << "\n";
}

// The model's keys against a weights file: what is missing, unexpected or shaped otherwise.
nlohmann::ordered_json check_weights(const BuiltModel& m, const std::string& weights) {
  SafetensorsSet set(weights);
  TensorMap map = tensors_under(set, "");
  if (m.kind.rfind("CLIPText", 0) == 0) map = with_text_model_prefix(std::move(map));
  const ModuleMatch m2 = match_module(*m.module, map);
  return {{"file", weights},
          {"matched", m2.matched.size()},
          {"missing", m2.missing},
          {"wrong_shape", m2.wrong_shape},
          {"unexpected", m2.unexpected}};
}

}  // namespace

BuiltModel build_model_from_config(const std::string& config_path) {
  const auto j = [&] {
    try {
      return nlohmann::json::parse(read_file(config_path));
    } catch (const nlohmann::json::exception& e) {
      XLTUNE_FAIL(config_path, ": not valid JSON: ", e.what());
    }
  }();
  const auto meta = at::TensorOptions().device(at::kMeta);
  const std::string text = j.dump();
  std::string kind = j.value("_class_name", "");
  if (kind.empty() && j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty())
    kind = j["architectures"][0].get<std::string>();
  if (kind == "UNet2DConditionModel") return {kind, UNet(UNetConfig::from_json_text(text, config_path), meta).ptr()};
  if (kind == "AutoencoderKL") return {kind, Vae(VaeConfig::from_json_text(text, config_path), meta).ptr()};
  if (kind == "CLIPTextModel" || kind == "CLIPTextModelWithProjection")
    return {kind, ClipTextModel(ClipTextConfig::from_json_text(text, config_path), meta).ptr()};
  XLTUNE_FAIL(config_path, ": unknown model '", kind, "': expected a config.json of UNet2DConditionModel, ",
              "AutoencoderKL, CLIPTextModel or CLIPTextModelWithProjection");
}

int inspect_config(const std::string& config_path, bool json) {
  BuiltModel m = build_model_from_config(config_path);
  if (json) {
    std::cout << describe(m).dump(2) << "\n";
  } else {
    print_model(m, config_path);
  }
  return 0;
}

int inspect_model_folder(const std::string& dir, bool json) {
  XLTUNE_CHECK(fs::is_directory(dir), dir, ": not a folder");
  std::vector<std::string> components;
  for (const char* name : {"text_encoder", "text_encoder_2", "unet", "vae"})
    if (fs::is_regular_file(fs::path(dir) / name / "config.json")) components.push_back(name);
  XLTUNE_CHECK(!components.empty(), dir, ": no component folders with a config.json (expected a diffusers SDXL ",
               "folder with unet/, vae/, text_encoder/, text_encoder_2/)");
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  bool complete = true;
  for (const auto& name : components) {
    const std::string sub = (fs::path(dir) / name).string();
    BuiltModel m = build_model_from_config(sub + "/config.json");
    nlohmann::ordered_json entry = describe(m);
    std::string weights;
    try {
      weights = find_safetensors_weights(sub);
    } catch (const Error& e) {
      entry["weights"] = {{"error", e.what()}};
      complete = false;
    }
    if (!weights.empty()) {
      entry["weights"] = check_weights(m, weights);
      complete &= entry["weights"]["missing"].empty() && entry["weights"]["wrong_shape"].empty();
    }
    if (!json) {
      print_model(m, name);
      const auto& w = entry["weights"];
      if (w.contains("error")) {
        std::cout << "  weights: " << w["error"].get<std::string>() << "\n";
      } else {
        std::cout << "  weights: " << w["file"].get<std::string>() << ": " << w["matched"].get<size_t>()
                  << " tensors match";
        for (const char* k : {"missing", "wrong_shape", "unexpected"})
          if (!w[k].empty()) std::cout << "; " << w[k].size() << " " << k << ": " << name_list(w[k].get<std::vector<std::string>>());
        std::cout << "\n";
      }
    }
    out[name] = std::move(entry);
  }
  if (json) std::cout << out.dump(2) << "\n";
  return complete ? 0 : 1;
}

}  // namespace xltune::cli
