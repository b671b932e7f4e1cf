#include "core/state_dict.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <filesystem>
#include <set>

#include "core/check.h"
#include "core/log.h"
#include "core/safetensors.h"

namespace xltune {

std::string shape_text(at::IntArrayRef shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

namespace {
std::vector<std::pair<std::string, at::Tensor>> targets_of(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, at::Tensor>> targets;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) targets.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers(/*recurse=*/true)) targets.emplace_back(item.key(), item.value());
  return targets;
}
}  // namespace

ModuleMatch match_module(const torch::nn::Module& module, const TensorMap& source) {
  ModuleMatch m;
  std::set<std::string> seen;
  for (const auto& [name, target] : targets_of(module)) {
    auto it = source.find(name);
    if (it == source.end()) {
      m.missing.push_back(name);
      continue;
    }
    seen.insert(name);
    if (at::IntArrayRef(it->second.shape) != target.sizes()) {
      m.wrong_shape.push_back(name + " " + shape_text(it->second.shape) + " (expected " + shape_text(target.sizes()) + ")");
    } else {
      m.matched.push_back(name);
    }
  }
  for (const auto& [name, ref] : source)
    if (!seen.count(name)) m.unexpected.push_back(name);
  return m;
}

std::string name_list(const std::vector<std::string>& names, size_t shown) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < shown; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > shown) out += " and " + std::to_string(names.size() - shown) + " more";
  return out;
}

std::string find_safetensors_weights(const std::string& dir, const std::string& variant) {
  namespace fs = std::filesystem;
  XLTUNE_CHECK(fs::is_directory(dir), dir, ": not a folder");
  std::vector<std::string> stems;
  if (!variant.empty()) {
    for (const char* base : {"model", "diffusion_pytorch_model"}) stems.push_back(std::string(base) + "." + variant);
  }
  for (const char* base : {"model", "diffusion_pytorch_model"}) stems.push_back(base);
  for (const auto& stem : stems) {
    for (const char* ext : {".safetensors", ".safetensors.index.json"}) {
      std::string path = dir + "/" + stem + ext;
      if (fs::is_regular_file(path)) return path;
    }
  }
  std::vector<std::string> present;
  for (const auto& entry : fs::directory_iterator(dir)) present.push_back(entry.path().filename().string());
  std::sort(present.begin(), present.end());
  bool pickle = std::any_of(present.begin(), present.end(), [](const std::string& n) {
    return n.size() > 4 && (n.compare(n.size() - 4, 4, ".bin") == 0 || n.compare(n.size() - 5, 5, ".ckpt") == 0);
  });
  XLTUNE_FAIL(dir, ": no model.safetensors (or sharded index", variant.empty() ? "" : ", or the " + variant + " variant",
              ") among: ", name_list(present, 8),
              pickle ? "; pickle files (.bin, .ckpt) are never loaded: convert them with launch/convert-weights " + dir : "");
}

TensorMap tensors_under(const SafetensorsSet& set, const std::string& prefix) {
  TensorMap out;
  for (const auto& key : set.names()) {
    if (key.compare(0, prefix.size(), prefix) != 0) continue;
    const SafetensorsEntry& e = set.entry(key);
    const SafetensorsFile* file = &set.file_of(key);
    out[key.substr(prefix.size())] =
        TensorRef{e.shape, [file, key] { return file->tensor(key); }, file->path() + ":" + key};
  }
  return out;
}

LoadReport load_module(torch::nn::Module& module, const TensorMap& source, const std::string& what) {
  const ModuleMatch m = match_module(module, source);
  const size_t total = m.matched.size() + m.missing.size() + m.wrong_shape.size();
  XLTUNE_CHECK(m.wrong_shape.empty(), what, ": ", m.wrong_shape.size(), " tensor(s) have the wrong shape: ",
               name_list(m.wrong_shape), " (a checkpoint of another model or config?)");
  XLTUNE_CHECK(m.missing.empty(), what, ": ", m.missing.size(), " of ", total,
               " tensors missing from the checkpoint: ", name_list(m.missing));
  LoadReport report;
  at::NoGradGuard no_grad;
  for (auto& [name, target] : targets_of(module)) {
    at::Tensor t = target;
    t.copy_(source.at(name).load());  // converts dtype and device in one step, into memory that exists
    report.loaded.push_back(name);
  }
  report.unexpected = m.unexpected;
  if (!report.unexpected.empty()) {
    log_warn(what, ": ignored ", report.unexpected.size(), " tensor(s) the model does not have: ",
             name_list(report.unexpected));
  }
  return report;
}

}  // namespace xltune
