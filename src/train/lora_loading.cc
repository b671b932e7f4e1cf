#include "train/lora_loading.h"

#include <ATen/ATen.h>

#include <map>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/safetensors.h"
#include "core/state_dict.h"
#include "core/strings.h"
#include "models/attention.h"
#include "models/unet.h"

namespace xltune {

namespace {

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

// Reads the keys of one LoRA file into (module, projection) -> down, up, alpha, in whichever
// of the four layouts the file uses (one per file).
class LoraKeyReader {
 public:
  LoraKeyReader(const std::string& path, UNetImpl& unet) : file_(path), path_(path), sites_(sites_of(unet)) {
    for (const auto& [dotted, site] : sites_) {
      std::string u = dotted;
      std::replace(u.begin(), u.end(), '.', '_');
      underscored_["lora_unet_" + u] = site;
    }
  }

  LoraFile read() {
    for (const auto& e : file_.entries()) {
      const std::string& key = e.name;
      if (starts_with(key, "lora_te") || starts_with(key, "text_encoder") || starts_with(key, "te_") ||
          starts_with(key, "bundle_emb")) {
        foreign_.push_back(key);
        continue;
      }
      if (take_kohya(key)) continue;
      const std::string k = starts_with(key, "unet.") ? key.substr(5) : key;
      if (take_suffixed(key, k) || take_reference(key, k)) continue;
      XLTUNE_FAIL(path_, ": '", key, "' is not a UNet LoRA tensor in a layout xltune reads (reference, kohya, peft ",
                  "or diffusers)");
    }
    XLTUNE_CHECK(foreign_.empty(), path_, ": has text-encoder LoRA tensors (", name_list(foreign_, 3),
                 "); xltune applies UNet LoRA only");
    XLTUNE_CHECK(!found_.empty(), path_, ": no LoRA tensors");
    return assemble();
  }

 private:
  void set_format(const char* f, const std::string& key) {
    XLTUNE_CHECK(format_.empty() || format_ == f, path_, ": mixes LoRA layouts (", format_, " and ", f, " at '", key,
                 "')");
    format_ = f;
  }

  // kohya: "lora_unet_<module_with_underscores>_<projection>.{lora_down.weight,lora_up.weight,alpha}".
  bool take_kohya(const std::string& key) {
    if (!starts_with(key, "lora_unet_")) return false;
    set_format("kohya", key);
    const auto dot = key.find('.');
    XLTUNE_CHECK(dot != std::string::npos, path_, ": kohya key '", key, "' has no suffix");
    const std::string prefix = key.substr(0, dot), suffix = key.substr(dot + 1);
    auto it = underscored_.find(prefix);
    XLTUNE_CHECK(it != underscored_.end(), path_, ": LoRA tensor '", key,
                 "' names no attention projection of this UNet (xltune applies LoRA on to_q, to_k, to_v and "
                 "to_out.0 only; a LoRA for another model or with conv/MLP layers?)");
    Pending& p = found_[it->second];
    if (suffix == "lora_down.weight") p.down = file_.tensor(key, at::kFloat);
    else if (suffix == "lora_up.weight") p.up = file_.tensor(key, at::kFloat);
    else if (suffix == "alpha") p.alpha = file_.tensor(key, at::kFloat).item<double>();
    else XLTUNE_FAIL(path_, ": kohya key '", key, "' has an unknown suffix (expected lora_down.weight, lora_up.weight, alpha)");
    return true;
  }

  // peft ("<site>.lora_A.weight", ".lora_B.weight") and diffusers ("<site>.lora.down.weight", ".up").
  bool take_suffixed(const std::string& key, const std::string& k) {
    struct Form { const char* suffix; const char* format; bool up; };
    static const Form forms[] = {{".lora_A.weight", "peft", false},    {".lora_B.weight", "peft", true},
                                 {".lora.down.weight", "diffusers", false}, {".lora.up.weight", "diffusers", true}};
    for (const auto& f : forms) {
      if (!ends_with(k, f.suffix)) continue;
      set_format(f.format, key);
      const auto site = split_site(k.substr(0, k.size() - std::strlen(f.suffix)), sites_, key, path_);
      (f.up ? found_[site].up : found_[site].down) = file_.tensor(key, at::kFloat);
      return true;
    }
    return false;
  }

  // The reference layout: "<module>.processor.<p>_lora.{down,up}.weight".
  bool take_reference(const std::string& key, const std::string& k) {
    const auto proc = k.find(".processor.");
    if (proc == std::string::npos || !(ends_with(k, "_lora.down.weight") || ends_with(k, "_lora.up.weight")))
      return false;
    set_format("reference", key);
    const bool up = ends_with(k, "_lora.up.weight");
    std::string proj = k.substr(proc + 11, k.size() - proc - 11 - (up ? 15 : 17));
    if (proj == "to_out") proj = "to_out.0";
    const auto site = split_site(k.substr(0, proc) + "." + proj, sites_, key, path_);
    (up ? found_[site].up : found_[site].down) = file_.tensor(key, at::kFloat);
    return true;
  }

  // peft's scale, alpha / r, from the file's adapter metadata (1 without it).
  double peft_scale() const {
    auto m = file_.metadata().find("lora_adapter_metadata");
    if (m == file_.metadata().end()) return 1.0;
    nlohmann::json j = nlohmann::json::parse(m->second, nullptr, false);
    if (j.is_object() && j.contains("r") && j.contains("lora_alpha"))
      return j["lora_alpha"].get<double>() / j["r"].get<double>();
    return 1.0;
  }

  LoraFile assemble() const {
    LoraFile out;
    out.format = format_;
    const double peft = format_ == "peft" ? peft_scale() : 1.0;
    for (const auto& [site, p] : found_) {
      XLTUNE_CHECK(p.down.defined() && p.up.defined(), path_, ": ", site.first, ".", site.second, " has ",
                   p.down.defined() ? "no up" : "no down", " matrix");
      LoraTensors t{site.first, site.second, p.down, p.up, 1.0};
      if (format_ == "kohya" && p.alpha > 0) t.scale = p.alpha / static_cast<double>(p.down.size(0));
      if (format_ == "peft") t.scale = peft;
      out.weights.push_back(std::move(t));
    }
    return out;
  }

  SafetensorsFile file_;
  std::string path_;
  std::map<std::string, std::pair<std::string, std::string>> sites_, underscored_;
  std::string format_;
  std::map<std::pair<std::string, std::string>, Pending> found_;
  std::vector<std::string> foreign_;
};

}  // namespace

LoraFile read_lora_file(const std::string& path, UNetImpl& unet) { return LoraKeyReader(path, unet).read(); }

}  // namespace xltune
