// Loading a module's parameters from checkpoint tensors, by name, with every mismatch
// reported (stable-diffusion.cpp's one-loader-that-reports-everything).
//
// A TensorMap says, for each name of the model's state dict, where its tensor comes from: a
// tensor of a safetensors file under some prefix, or a conversion (a slice of a fused q/k/v
// matrix, a transposed projection) for checkpoints laid out differently. The model's names
// are its module paths, registered after the checkpoint keys, so most maps are a prefix.
#pragma once

#include <c10/core/TensorOptions.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace at {
class Tensor;
}
namespace torch::nn {
class Module;
}

namespace xltune {

class SafetensorsSet;

struct TensorRef {
  std::vector<int64_t> shape;
  // Produces the tensor (CPU, its stored dtype or converted); called once, at load time.
  std::function<at::Tensor()> load;
  std::string origin;  // "file.safetensors:key", for messages
};
using TensorMap = std::map<std::string, TensorRef>;

// Every tensor of `set` whose key starts with `prefix`, named without it. Keys that do not
// start with `prefix` are left out (other components of a single-file checkpoint).
TensorMap tensors_under(const SafetensorsSet& set, const std::string& prefix);

// Where loaded parameters go, and which weights file variant to prefer.
struct ModelLoadOptions {
  at::TensorOptions options;  // dtype and device of the parameters (default fp32, CPU)
  std::string variant;        // "fp16" to prefer model.fp16.safetensors / diffusion_pytorch_model.fp16...
};

struct LoadReport {
  std::vector<std::string> loaded;
  std::vector<std::string> unexpected;  // in the map, not in the model: warned about
};

// How a module's parameters and buffers line up with a checkpoint's tensors, by name: the one
// matching rule that loading and `xltune inspect MODEL_DIR` share.
struct ModuleMatch {
  std::vector<std::string> matched;
  std::vector<std::string> missing;      // in the module, not in the map
  std::vector<std::string> wrong_shape;  // "name [checkpoint shape] (expected [model shape])"
  std::vector<std::string> unexpected;   // in the map, not in the module
};
ModuleMatch match_module(const torch::nn::Module& module, const TensorMap& source);

// Copies each parameter and buffer of `module` from `source` (converting to the parameter's
// dtype and device). Missing and wrong-shape tensors are an error that names them all (up to
// a few, then a count) and says `what` was being loaded; unexpected ones are returned.
LoadReport load_module(torch::nn::Module& module, const TensorMap& source, const std::string& what);

// The weights file of a component folder (diffusers/transformers layout): the `variant`
// ("fp16") file if asked for and present, else the plain one; a single .safetensors or a
// sharded *.safetensors.index.json. Pickle files (.bin, .ckpt) are never loaded: a folder
// that has only those gets an error that says so.
std::string find_safetensors_weights(const std::string& dir, const std::string& variant = "");

// "[4, 3]"
std::string shape_text(c10::IntArrayRef shape);
// "a, b, c and 12 more"
std::string name_list(const std::vector<std::string>& names, size_t shown = 5);

}  // namespace xltune
