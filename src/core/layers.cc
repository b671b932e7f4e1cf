#include "core/layers.h"

#include <ATen/ATen.h>

namespace xltune::nn {

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool with_bias, const at::TensorOptions& options) {
  weight = register_parameter("weight", at::empty({out_features, in_features}, options));
  if (with_bias) bias = register_parameter("bias", at::empty({out_features}, options));
}

at::Tensor LinearImpl::forward(const at::Tensor& x) { return at::linear(x, weight, bias); }

LayerNormImpl::LayerNormImpl(int64_t dim, double eps_, const at::TensorOptions& options) : eps(eps_) {
  weight = register_parameter("weight", at::empty({dim}, options));
  bias = register_parameter("bias", at::empty({dim}, options));
}

at::Tensor LayerNormImpl::forward(const at::Tensor& x) {
  return at::layer_norm(x, {weight.size(0)}, weight, bias, eps);
}

EmbeddingImpl::EmbeddingImpl(int64_t count, int64_t dim, const at::TensorOptions& options) {
  weight = register_parameter("weight", at::empty({count, dim}, options));
}

at::Tensor EmbeddingImpl::forward(const at::Tensor& ids) { return at::embedding(weight, ids); }

Conv2dImpl::Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride_, int64_t padding_,
                       const at::TensorOptions& options, bool with_bias)
    : stride(stride_), padding(padding_) {
  weight = register_parameter("weight", at::empty({out_channels, in_channels, kernel, kernel}, options));
  if (with_bias) bias = register_parameter("bias", at::empty({out_channels}, options));
}

at::Tensor Conv2dImpl::forward(const at::Tensor& x) {
  return at::conv2d(x, weight, bias, {stride, stride}, {padding, padding});
}

GroupNormImpl::GroupNormImpl(int64_t groups_, int64_t channels, double eps_, const at::TensorOptions& options)
    : groups(groups_), eps(eps_) {
  weight = register_parameter("weight", at::empty({channels}, options));
  bias = register_parameter("bias", at::empty({channels}, options));
}

at::Tensor GroupNormImpl::forward(const at::Tensor& x) { return at::group_norm(x, groups, weight, bias, eps); }

int64_t parameter_count(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

}  // namespace xltune::nn
