// Attention and transformer blocks as diffusers builds them for SDXL (attention.py,
// attention_processor.py, transformers/transformer_2d.py). Keys: to_q, to_k, to_v,
// to_out.0; ff.net.0.proj, ff.net.2; norm1..3; Transformer2DModel's norm, proj_in, proj_out,
// transformer_blocks.N. Attention runs through scaled_dot_product_attention.
#pragma once

#include <vector>

#include "core/layers.h"
#include "models/lora.h"

namespace xltune {

class AttentionImpl : public torch::nn::Module {
 public:
  // context_dim 0: self-attention. qkv_bias: the VAE's mid-block attention has biases.
  AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads, int64_t head_dim, bool qkv_bias,
                const at::TensorOptions& o);
  // x [B, N, query_dim], context [B, M, context_dim] (undefined: self-attention).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context = {});
  nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, to_out{nullptr};
  // Optional LoRA adapters of the four projections (Note [LoRA in Attention], models/lora.h).
  std::shared_ptr<LoraAdapter> lora_q, lora_k, lora_v, lora_out;
  // The adapters of one input as one group (Note [LoRA's shared down-projection]).
  bool lora_fused = false;
  int64_t heads;
};
TORCH_MODULE(Attention);

// GEGLU feed-forward: proj to 2 x 4C, h * gelu(gate), back to C.
class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(int64_t dim, const at::TensorOptions& o);
  at::Tensor forward(const at::Tensor& x);
  nn::Linear proj{nullptr}, out{nullptr};
};
TORCH_MODULE(FeedForward);

class BasicTransformerBlockImpl : public torch::nn::Module {
 public:
  BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim, int64_t context_dim, const at::TensorOptions& o);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context);
  nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  Attention attn1{nullptr}, attn2{nullptr};
  FeedForward ff{nullptr};
};
TORCH_MODULE(BasicTransformerBlock);

// GroupNorm -> linear proj_in -> blocks -> proj_out -> + input. With recompute, each block's
// activations are recomputed in backward (gradient checkpointing).
class Transformer2DModelImpl : public torch::nn::Module {
 public:
  Transformer2DModelImpl(int64_t channels, int64_t heads, int64_t depth, int64_t context_dim, int64_t groups,
                         bool linear_projection, const at::TensorOptions& o);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context, bool recompute = false);
  nn::GroupNorm norm{nullptr};
  nn::Linear proj_in_linear{nullptr}, proj_out_linear{nullptr};
  nn::Conv2d proj_in_conv{nullptr}, proj_out_conv{nullptr};
  std::vector<BasicTransformerBlock> blocks;
};
TORCH_MODULE(Transformer2DModel);

// The VAE's single-head mid-block attention over all pixels: group_norm, to_q/k/v (biased),
// to_out.0, residual.
class VaeAttentionImpl : public torch::nn::Module {
 public:
  VaeAttentionImpl(int64_t channels, int64_t groups, double eps, const at::TensorOptions& o);
  at::Tensor forward(const at::Tensor& x);
  nn::GroupNorm group_norm{nullptr};
  Attention attention{nullptr};
};
TORCH_MODULE(VaeAttention);

}  // namespace xltune
