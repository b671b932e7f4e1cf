// The few layers that every model of xltune is built from, with parameters that are created
// but never initialised: their values come from a checkpoint (design.md: "skips random
// initialisation of weights it will overwrite"). On the meta device they take no memory, so a
// full-size model can be built from its config alone to list its keys (xltune inspect).
//
// libtorch's own torch::nn::Linear etc. run kaiming/uniform init in their constructors, which
// costs seconds on a 2.6 B-parameter UNet and is thrown away by the load.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <vector>

namespace xltune::nn {

// y = x Wᵀ + b; weight [out, in] as in PyTorch checkpoints.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight, bias;
};
TORCH_MODULE(Linear);

class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, double eps, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight, bias;
  double eps;
};
TORCH_MODULE(LayerNorm);

class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t count, int64_t dim, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& ids);
  at::Tensor weight;
};
TORCH_MODULE(Embedding);

class Conv2dImpl : public torch::nn::Module {
 public:
  Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride, int64_t padding,
             const at::TensorOptions& options, bool bias = true);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight, bias;
  int64_t stride, padding;
};
TORCH_MODULE(Conv2d);

class GroupNormImpl : public torch::nn::Module {
 public:
  GroupNormImpl(int64_t groups, int64_t channels, double eps, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight, bias;
  int64_t groups;
  double eps;
};
TORCH_MODULE(GroupNorm);

// A module with no parameters of its own, only children: it exists so that parameter names
// follow the checkpoint's key paths ("text_model.encoder", "ff.net.1").
struct Container : torch::nn::Module {};

// Registers `items` as the numbered children "name.0", "name.1", ... of `parent` (nothing
// when empty), as PyTorch's ModuleList names them in checkpoints.
template <typename T>
void register_list(torch::nn::Module& parent, const char* name, const std::vector<T>& items) {
  if (items.empty()) return;
  torch::nn::ModuleList list;
  for (const auto& item : items) list->push_back(item);
  parent.register_module(name, list);
}

// Parameter count of a module (works on the meta device).
int64_t parameter_count(const torch::nn::Module& module);

}  // namespace xltune::nn
