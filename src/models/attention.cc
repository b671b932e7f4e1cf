#include "models/attention.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/container/modulelist.h>

#include "core/attention_kernel.h"
#include "core/recompute.h"

namespace xltune {

AttentionImpl::AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads_, int64_t head_dim, bool qkv_bias,
                             const at::TensorOptions& o)
    : heads(heads_) {
  const int64_t inner = heads * head_dim;
  const int64_t kv_dim = context_dim > 0 ? context_dim : query_dim;
  to_q = register_module("to_q", nn::Linear(query_dim, inner, qkv_bias, o));
  to_k = register_module("to_k", nn::Linear(kv_dim, inner, qkv_bias, o));
  to_v = register_module("to_v", nn::Linear(kv_dim, inner, qkv_bias, o));
  // "to_out.0" (diffusers keeps a dropout as to_out.1).
  torch::nn::ModuleList out_list;
  to_out = nn::Linear(inner, query_dim, true, o);
  out_list->push_back(to_out);
  register_module("to_out", out_list);
}

namespace {
// W x, plus the LoRA adapter's term when there is one.
at::Tensor project(nn::Linear& linear, const std::shared_ptr<LoraAdapter>& lora, const at::Tensor& x) {
  at::Tensor y = linear(x);
  return lora ? lora->add_to(y, x) : y;
}
}  // namespace

at::Tensor AttentionImpl::forward(const at::Tensor& x, const at::Tensor& context) {
  const at::Tensor& kv = context.defined() ? context : x;
  const int64_t b = x.size(0);
  auto split = [&](const at::Tensor& t) { return t.view({b, -1, heads, t.size(-1) / heads}).transpose(1, 2); };
  at::Tensor q, k, v;
  if (lora_fused && lora_q && lora_k && lora_v) {
    // Note [LoRA's shared down-projection]: q, k and v of one input, or k and v of the context.
    if (!context.defined()) {
      auto qkv = add_lora_group({to_q(x), to_k(x), to_v(x)}, x, {lora_q.get(), lora_k.get(), lora_v.get()});
      q = qkv[0], k = qkv[1], v = qkv[2];
    } else {
      q = project(to_q, lora_q, x);
      auto kv_out = add_lora_group({to_k(kv), to_v(kv)}, kv, {lora_k.get(), lora_v.get()});
      k = kv_out[0], v = kv_out[1];
    }
  } else {
    q = project(to_q, lora_q, x), k = project(to_k, lora_k, kv), v = project(to_v, lora_v, kv);
  }
  at::Tensor out = attention(split(q), split(k), split(v));
  return project(to_out, lora_out, out.transpose(1, 2).reshape({b, -1, out.size(1) * out.size(3)}));
}

namespace {
// GEGLU's projection sits at "net.0.proj": a container with one child.
struct Geglu : nn::Container {};
}  // namespace

FeedForwardImpl::FeedForwardImpl(int64_t dim, const at::TensorOptions& o) {
  const int64_t inner = dim * 4;
  torch::nn::ModuleList net;
  auto geglu = std::make_shared<Geglu>();
  proj = geglu->register_module("proj", nn::Linear(dim, inner * 2, true, o));
  out = nn::Linear(inner, dim, true, o);
  net->push_back(geglu);
  net->push_back(std::make_shared<nn::Container>());  // net.1: dropout in diffusers, no weights
  net->push_back(out);
  register_module("net", net);
}

at::Tensor FeedForwardImpl::forward(const at::Tensor& x) {
  std::vector<at::Tensor> parts = proj(x).chunk(2, -1);
  return out(parts[0] * at::gelu(parts[1]));
}

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim, int64_t context_dim,
                                                     const at::TensorOptions& o) {
  norm1 = register_module("norm1", nn::LayerNorm(dim, 1e-5, o));
  attn1 = register_module("attn1", Attention(dim, 0, heads, head_dim, false, o));
  norm2 = register_module("norm2", nn::LayerNorm(dim, 1e-5, o));
  attn2 = register_module("attn2", Attention(dim, context_dim, heads, head_dim, false, o));
  norm3 = register_module("norm3", nn::LayerNorm(dim, 1e-5, o));
  ff = register_module("ff", FeedForward(dim, o));
}

at::Tensor BasicTransformerBlockImpl::forward(const at::Tensor& x, const at::Tensor& context) {
  at::Tensor h = x + attn1(norm1(x));
  h = h + attn2(norm2(h), context);
  return h + ff(norm3(h));
}

Transformer2DModelImpl::Transformer2DModelImpl(int64_t channels, int64_t heads, int64_t depth, int64_t context_dim,
                                               int64_t groups, bool linear_projection, const at::TensorOptions& o) {
  norm = register_module("norm", nn::GroupNorm(groups, channels, 1e-6, o));
  if (linear_projection) {
    proj_in_linear = register_module("proj_in", nn::Linear(channels, channels, true, o));
  } else {
    proj_in_conv = register_module("proj_in", nn::Conv2d(channels, channels, 1, 1, 0, o));
  }
  torch::nn::ModuleList list;
  for (int64_t i = 0; i < depth; ++i) {
    blocks.push_back(BasicTransformerBlock(channels, heads, channels / heads, context_dim, o));
    list->push_back(blocks.back());
  }
  register_module("transformer_blocks", list);
  if (linear_projection) {
    proj_out_linear = register_module("proj_out", nn::Linear(channels, channels, true, o));
  } else {
    proj_out_conv = register_module("proj_out", nn::Conv2d(channels, channels, 1, 1, 0, o));
  }
}

at::Tensor Transformer2DModelImpl::forward(const at::Tensor& x, const at::Tensor& context, bool recompute) {
  const int64_t b = x.size(0), c = x.size(1), height = x.size(2), width = x.size(3);
  at::Tensor h = norm(x);
  if (proj_in_conv) h = proj_in_conv(h);
  h = h.permute({0, 2, 3, 1}).reshape({b, height * width, c});
  if (proj_in_linear) h = proj_in_linear(h);
  for (auto& block : blocks) {
    if (recompute) {
      auto impl = block.ptr();
      h = recompute_in_backward([impl](const at::Tensor& in, const at::Tensor& ctx) { return impl->forward(in, ctx); },
                                h, context);
    } else {
      h = block->forward(h, context);
    }
  }
  if (proj_out_linear) h = proj_out_linear(h);
  h = h.reshape({b, height, width, c}).permute({0, 3, 1, 2});
  if (proj_out_conv) h = proj_out_conv(h.contiguous());
  return h + x;
}

VaeAttentionImpl::VaeAttentionImpl(int64_t channels, int64_t groups, double eps, const at::TensorOptions& o) {
  group_norm = register_module("group_norm", nn::GroupNorm(groups, channels, eps, o));
  // Registered under this module directly (keys to_q, to_k, to_v, to_out.0 beside group_norm).
  attention = Attention(channels, 0, 1, channels, true, o);
  for (const auto& child : attention->named_children()) register_module(child.key(), child.value());
}

at::Tensor VaeAttentionImpl::forward(const at::Tensor& x) {
  const int64_t b = x.size(0), c = x.size(1), height = x.size(2), width = x.size(3);
  at::Tensor h = group_norm(x).view({b, c, height * width}).transpose(1, 2);
  h = attention->forward(h);
  return h.transpose(1, 2).reshape({b, c, height, width}) + x;
}

}  // namespace xltune
