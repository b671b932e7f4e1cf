// xltune inspect --config FILE and xltune inspect MODEL_DIR: models built from their
// config.json alone, on the meta device (no memory for weights), listing every key and shape
// and the parameter count; for a folder, each component, with its weights file checked
// against the model (missing, unexpected and wrong-shape tensors by name).
#pragma once

#include <memory>
#include <string>

namespace torch::nn {
class Module;
}

namespace xltune::cli {

struct BuiltModel {
  std::string kind;  // "UNet2DConditionModel", "AutoencoderKL", "CLIPTextModel", ...
  std::shared_ptr<torch::nn::Module> module;
};

// Recognises diffusers' "_class_name" and transformers' "architectures".
BuiltModel build_model_from_config(const std::string& config_path);

int inspect_config(const std::string& config_path, bool json);
int inspect_model_folder(const std::string& dir, bool json);

}  // namespace xltune::cli
