#include "train/lora_loading.h"

#include <ATen/ATen.h>

#include <map>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/safetensors.h"
#include "core/state_dict.h"
#include "models/attention.h"
#include "models/unet.h"

namespace xltune {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

struct Pending {
  at::Tensor down, up;
  double alpha = -1;  // kohya's .alpha, when present
};

// "<module>.<projection>" of every attention projection of the UNet, and its underscored form.
std::map<std::string, std::pair<std::string, std::string>> sites_of(UNetImpl& unet) {
  std::map<std::string, std::pair<std::string, std::string>> out;
  for (const auto& item : unet.named_modules("", false)) {
    if (dynamic_cast<AttentionImpl*>(item.value().get()) == nullptr) continue;
    for (const auto& p : lora_projections()) out[item.key() + "." + p] = {item.key(), p};
  }
  return out;
}

std::pair<std::string, std::string> split_site(const std::string& dotted,
                                               const std::map<std::string, std::pair<std::string, std::string>>& sites,
                                               const std::string& key, const std::string& path) {
  auto it = sites.find(dotted);
  XLTUNE_CHECK(it != sites.end(), path, ": LoRA tensor '", key, "' is for '", dotted,
               "', which is not an attention projection of this UNet (a LoRA for another model?)");
  return it->second;
}

}  // namespace

LoraFile read_lora_file(const std::string& path, UNetImpl& unet) {
  SafetensorsFile file(path);
  const auto sites = sites_of(unet);
  std::map<std::string, std::pair<std::string, std::string>> underscored;
  for (const auto& [dotted, site] : sites) {
    std::string u = dotted;
    std::replace(u.begin(), u.end(), '.', '_');
    underscored["lora_unet_" + u] = site;
  }
  LoraFile out;
  std::map<std::pair<std::string, std::string>, Pending> found;
  std::vector<std::string> foreign;
  auto set_format = [&](const char* f, const std::string& key) {
    XLTUNE_CHECK(out.format.empty() || out.format == f, path, ": mixes LoRA layouts (", out.format, " and ", f,
                 " at '", key, "')");
    out.format = f;
  };
  for (const auto& e : file.entries()) {
    const std::string& key = e.name;
    if (starts_with(key, "lora_te") || starts_with(key, "text_encoder") || starts_with(key, "te_") ||
        starts_with(key, "bundle_emb")) {
      foreign.push_back(key);
      continue;
    }
    if (starts_with(key, "lora_unet_")) {
      set_format("kohya", key);
      const auto dot = key.find('.');
      XLTUNE_CHECK(dot != std::string::npos, path, ": kohya key '", key, "' has no suffix");
      const std::string prefix = key.substr(0, dot), suffix = key.substr(dot + 1);
      auto it = underscored.find(prefix);
      XLTUNE_CHECK(it != underscored.end(), path, ": LoRA tensor '", key,
                   "' names no attention projection of this UNet (xltune applies LoRA on to_q, to_k, to_v and "
                   "to_out.0 only; a LoRA for another model or with conv/MLP layers?)");
      Pending& p = found[it->second];
      if (suffix == "lora_down.weight") p.down = file.tensor(key, at::kFloat);
      else if (suffix == "lora_up.weight") p.up = file.tensor(key, at::kFloat);
      else if (suffix == "alpha") p.alpha = file.tensor(key, at::kFloat).item<double>();
      else XLTUNE_FAIL(path, ": kohya key '", key, "' has an unknown suffix (expected lora_down.weight, lora_up.weight, alpha)");
      continue;
    }
    std::string k = starts_with(key, "unet.") ? key.substr(5) : key;
    struct Form { const char* suffix; const char* format; bool up; };
    static const Form forms[] = {{".lora_A.weight", "peft", false},    {".lora_B.weight", "peft", true},
                                 {".lora.down.weight", "diffusers", false}, {".lora.up.weight", "diffusers", true}};
    bool matched = false;
    for (const auto& f : forms) {
      if (!ends_with(k, f.suffix)) continue;
      set_format(f.format, key);
      const auto site = split_site(k.substr(0, k.size() - std::strlen(f.suffix)), sites, key, path);
      (f.up ? found[site].up : found[site].down) = file.tensor(key, at::kFloat);
      matched = true;
      break;
    }
    if (matched) continue;
    // The reference layout: "<module>.processor.<p>_lora.{down,up}.weight".
    const auto proc = k.find(".processor.");
    if (proc != std::string::npos && (ends_with(k, "_lora.down.weight") || ends_with(k, "_lora.up.weight"))) {
      set_format("reference", key);
      const bool up = ends_with(k, "_lora.up.weight");
      std::string proj = k.substr(proc + 11, k.size() - proc - 11 - (up ? 15 : 17));
      if (proj == "to_out") proj = "to_out.0";
      const auto site = split_site(k.substr(0, proc) + "." + proj, sites, key, path);
      (up ? found[site].up : found[site].down) = file.tensor(key, at::kFloat);
      continue;
    }
    XLTUNE_FAIL(path, ": '", key, "' is not a UNet LoRA tensor in a layout xltune reads (reference, kohya, peft or ",
                "diffusers)");
  }
  XLTUNE_CHECK(foreign.empty(), path, ": has text-encoder LoRA tensors (", name_list(foreign, 3),
               "); xltune applies UNet LoRA only");
  XLTUNE_CHECK(!found.empty(), path, ": no LoRA tensors");
  double peft_scale = 1.0;
  if (out.format == "peft") {
    auto m = file.metadata().find("lora_adapter_metadata");
    if (m != file.metadata().end()) {
      nlohmann::json j = nlohmann::json::parse(m->second, nullptr, false);
      if (j.is_object() && j.contains("r") && j.contains("lora_alpha"))
        peft_scale = j["lora_alpha"].get<double>() / j["r"].get<double>();
    }
  }
  for (auto& [site, p] : found) {
    XLTUNE_CHECK(p.down.defined() && p.up.defined(), path, ": ", site.first, ".", site.second, " has ",
                 p.down.defined() ? "no up" : "no down", " matrix");
    LoraTensors t{site.first, site.second, p.down, p.up, 1.0};
    if (out.format == "kohya" && p.alpha > 0) t.scale = p.alpha / static_cast<double>(p.down.size(0));
    if (out.format == "peft") t.scale = peft_scale;
    out.weights.push_back(std::move(t));
  }
  return out;
}

}  // namespace xltune
