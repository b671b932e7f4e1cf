#include "models/model_loading.h"

#include <ATen/ATen.h>

#include "core/check.h"
#include "core/safetensors.h"
#include "models/sgm_keys.h"

#include <set>

namespace xltune {

namespace {
// A diffusers component folder: config.json, then the weights file, straight into the model.
template <typename Model, typename Config>
Model load_component(const std::string& dir, const ModelLoadOptions& load) {
  Model model(Config::from_json_file(dir + "/config.json"), load.options);
  const std::string weights = find_safetensors_weights(dir, load.variant);
  SafetensorsSet set(weights);
  load_module(*model, tensors_under(set, ""), weights);
  return model;
}
}  // namespace

UNet load_unet(const std::string& dir, const ModelLoadOptions& load) { return load_component<UNet, UNetConfig>(dir, load); }
Vae load_vae(const std::string& dir, const ModelLoadOptions& load) { return load_component<Vae, VaeConfig>(dir, load); }

TensorMap sgm_tensor_map(const SafetensorsSet& set, const std::string& prefix,
                         const std::map<std::string, std::string>& sgm_names) {
  TensorMap theirs = tensors_under(set, prefix);
  TensorMap out;
  std::set<std::string> used;
  for (const auto& [ours, sgm] : sgm_names) {
    auto it = theirs.find(sgm);
    if (it == theirs.end()) continue;  // reported as missing by load_module, under our name
    TensorRef ref = it->second;
    if (ref.shape.size() == 4 && ref.shape[2] == 1 && ref.shape[3] == 1 &&
        ours.find("mid_block.attentions.0.to_") != std::string::npos) {
      // SGM's VAE attention projections are 1x1 convolutions; ours are linears.
      TensorRef conv = ref;
      ref = TensorRef{{conv.shape[0], conv.shape[1]}, [conv] { return conv.load().flatten(1); }, conv.origin};
    }
    out[ours] = ref;
    used.insert(sgm);
  }
  for (const auto& [name, ref] : theirs)
    if (!used.count(name)) out["(single file) " + prefix + name] = ref;
  return out;
}

UNet load_unet_from_single_file(const std::string& path, const UNetConfig& config, const ModelLoadOptions& load) {
  SafetensorsSet set(path);
  XLTUNE_CHECK(set.contains(std::string(kSingleFileUNetPrefix) + "input_blocks.0.0.weight"), path,
               ": no UNet under '", kSingleFileUNetPrefix, "' (not an SDXL single-file checkpoint?)");
  UNet model(config, load.options);
  load_module(*model, sgm_tensor_map(set, kSingleFileUNetPrefix, sgm_unet_keys(config)), path + " (UNet)");
  return model;
}

Vae load_vae_from_single_file(const std::string& path, const VaeConfig& config, const ModelLoadOptions& load) {
  SafetensorsSet set(path);
  XLTUNE_CHECK(set.contains(std::string(kSingleFileVaePrefix) + "encoder.conv_in.weight"), path, ": no VAE under '",
               kSingleFileVaePrefix, "' (not an SDXL single-file checkpoint?)");
  Vae model(config, load.options);
  load_module(*model, sgm_tensor_map(set, kSingleFileVaePrefix, sgm_vae_keys(config)), path + " (VAE)");
  return model;
}

}  // namespace xltune
