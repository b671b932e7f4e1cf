#include "train/export.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/strings.h"

namespace xltune {

namespace {

std::string underscored(std::string s) {
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
}

}  // namespace

std::string reference_lora_key(const std::string& module, const std::string& projection, bool up) {
  // to_out.0 is "to_out_lora" in the attention-processor layout.
  const std::string proj = projection == "to_out.0" ? "to_out" : projection;
  return module + ".processor." + proj + "_lora." + (up ? "up" : "down") + ".weight";
}

std::string kohya_lora_prefix(const std::string& module, const std::string& projection) {
  return "lora_unet_" + underscored(module) + "_" + underscored(projection);
}

TrainedWeights trained_weights_from_state(const NamedTensors& state, const std::string& state_json,
                                          const NamedTensors& unet_base) {
  TrainedWeights w;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(state_json);
  } catch (const nlohmann::json::exception& e) {
    XLTUNE_FAIL("trainer state: its xltune_state metadata is not JSON: ", e.what());
  }
  auto field = [&](const char* key) -> const nlohmann::json& {
    XLTUNE_CHECK(j.contains(key), "trainer state: metadata has no \"", key, "\"");
    return j[key];
  };
  w.kind = field("kind").get<std::string>();
  XLTUNE_CHECK(w.kind == "lora" || w.kind == "full", "trainer state: kind '", w.kind, "': expected lora or full");
  w.lora_rank = field("lora_rank").get<int64_t>();
  w.lora_alpha = field("lora_alpha").get<double>();
  w.token_string = field("token_string").get<std::string>();
  w.special_tokens = field("special_tokens").get<std::string>();
  w.step = field("step").get<int64_t>();
  w.max_train_steps = field("max_train_steps").get<int64_t>();
  w.model = field("model").get<std::string>();
  if (j.contains("training_metadata"))
    for (auto& [k, v] : j["training_metadata"].items()) w.training_metadata[k] = v.get<std::string>();

  std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
  auto take = [&](const std::string& name) {
    auto it = by_name.find(name);
    XLTUNE_CHECK(it != by_name.end(), "trainer state: no tensor '", name, "'");
    at::Tensor t = it->second;
    by_name.erase(it);
    return t;
  };
  w.rows_1 = take("text_encoders_0");
  w.rows_2 = take("text_encoders_1");
  if (w.kind == "lora") {
    // "unet.<module>.<projection>.lora_A.weight", projection possibly "to_out.0".
    std::vector<std::string> a_names;
    for (const auto& [name, t] : by_name)
      if (ends_with(name, ".lora_A.weight")) a_names.push_back(name);
    for (const auto& a : a_names) {
      const std::string base = a.substr(5, a.size() - 5 - std::string(".lora_A.weight").size());
      const size_t cut = ends_with(base, ".to_out.0") ? base.size() - 9 : base.rfind('.');
      LoraTensors l{base.substr(0, cut), base.substr(cut + 1), take(a), take("unet." + base + ".lora_B.weight")};
      w.lora.push_back(std::move(l));
    }
  } else {
    std::map<std::string, at::Tensor> trained;
    for (const auto& [name, t] : by_name)
      if (name.compare(0, 5, "unet.") == 0) trained[name.substr(5)] = t;
    for (const auto& [name, _] : trained) by_name.erase("unet." + name);
    XLTUNE_CHECK(!unet_base.empty(), "trainer state: full fine-tuning; the base model's UNet is needed (--model)");
    for (const auto& [name, base] : unet_base) {
      auto it = trained.find(name);
      w.unet.emplace_back(name, it != trained.end() ? it->second : base);
      if (it != trained.end()) trained.erase(it);
    }
    XLTUNE_CHECK(trained.empty(), "trainer state: ", trained.size(), " trained UNet tensors the base model does not have, ",
                 "e.g. ", trained.begin()->first);
  }
  XLTUNE_CHECK(by_name.empty(), "trainer state: unexpected tensor '", by_name.begin()->first, "'");
  return w;
}

std::string state_metadata_json(const TrainedWeights& w) {
  nlohmann::json j = {{"kind", w.kind},
                      {"lora_rank", w.lora_rank},
                      {"lora_alpha", w.lora_alpha},
                      {"token_string", w.token_string},
                      {"special_tokens", w.special_tokens},
                      {"step", w.step},
                      {"max_train_steps", w.max_train_steps},
                      {"model", w.model},
                      {"training_metadata", w.training_metadata}};
  return j.dump();
}

void write_trainer_state(const std::string& path, const NamedTensors& state, const TrainedWeights& w) {
  save_safetensors(path, state, {{"xltune_state", state_metadata_json(w)}});
}

std::vector<std::string> write_export_files(const TrainedWeights& w, const std::string& dir, at::ScalarType unet_dtype) {
  std::filesystem::create_directories(dir);
  std::vector<std::string> files;
  at::NoGradGuard no_grad;
  const auto f32 = [](const at::Tensor& t) { return t.detach().to(at::kCPU, at::kFloat).contiguous(); };
  if (w.kind == "lora") {
    XLTUNE_CHECK(!w.lora.empty() && w.lora_rank > 0, "export: no LoRA tensors");
    const double scale = w.lora_alpha / static_cast<double>(w.lora_rank);
    NamedTensors reference, kohya;
    for (const auto& l : w.lora) {
      reference.emplace_back(reference_lora_key(l.module, l.projection, false), f32(l.down));
      // The reference layout has no alpha: its loaders compute W x + up(down(x)).
      reference.emplace_back(reference_lora_key(l.module, l.projection, true), f32(l.up) * scale);
      const std::string k = kohya_lora_prefix(l.module, l.projection);
      kohya.emplace_back(k + ".lora_down.weight", f32(l.down));
      kohya.emplace_back(k + ".lora_up.weight", f32(l.up));
      kohya.emplace_back(k + ".alpha", at::full({}, w.lora_alpha, at::kFloat));
    }
    save_safetensors(dir + "/" + kLoraFile, reference);
    files.push_back(kLoraFile);
    std::map<std::string, std::string> meta = w.training_metadata;
    meta["ss_network_module"] = "networks.lora";
    meta["ss_network_dim"] = std::to_string(w.lora_rank);
    std::ostringstream alpha;
    alpha << w.lora_alpha;
    meta["ss_network_alpha"] = alpha.str();
    meta["ss_base_model_version"] = "sdxl_base_v1-0";
    meta["modelspec.sai_model_spec"] = "1.0.0";
    meta["modelspec.architecture"] = "stable-diffusion-xl-v1-base/lora";
    meta["modelspec.implementation"] = "https://github.com/Stability-AI/generative-models";
    meta["modelspec.trigger_phrase"] = w.token_string;
    meta["xltune_token_map"] = nlohmann::json({{w.token_string, w.special_tokens}}).dump();
    save_safetensors(dir + "/" + kKohyaLoraFile, kohya, meta);
  } else {
    XLTUNE_CHECK(!w.unet.empty(), "export: no UNet tensors");
    NamedTensors unet;
    for (const auto& [name, t] : w.unet) unet.emplace_back(name, t.detach().to(at::kCPU, unet_dtype).contiguous());
    save_safetensors(dir + "/" + kUnetFile, unet);
    files.push_back(kUnetFile);
  }
  save_safetensors(dir + "/" + kEmbeddingsFile,
                   {{"text_encoders_0", f32(w.rows_1)}, {"text_encoders_1", f32(w.rows_2)}});
  files.push_back(kEmbeddingsFile);
  write_file_atomic(dir + "/" + kSpecialParamsFile,
                    nlohmann::json({{w.token_string, w.special_tokens}}).dump() + "\n");
  files.push_back(kSpecialParamsFile);
  if (w.kind == "lora") files.push_back(kKohyaLoraFile);
  save_safetensors(dir + "/" + kSdxlEmbeddingsFile, {{"clip_l", f32(w.rows_1)}, {"clip_g", f32(w.rows_2)}});
  files.push_back(kSdxlEmbeddingsFile);
  return files;
}

}  // namespace xltune
