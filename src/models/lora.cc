#include "models/lora.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <map>

#include "core/check.h"
#include "core/keyed_random.h"
#include "core/state_dict.h"
#include "models/attention.h"
#include "models/unet.h"

namespace xltune {

at::Tensor LoraAdapter::delta(const at::Tensor& x) const {
  const at::ScalarType dt = product_dtype();
  at::Tensor h = at::linear(at::linear(x.to(dt), down.to(dt)), up.to(dt));
  return (scale == 1.0 ? h : h * scale).to(x.scalar_type());
}

namespace {

// `t` in `dtype`: itself when it is in it already (no op).
at::Tensor in_dtype(const at::Tensor& t, at::ScalarType dtype) { return t.scalar_type() == dtype ? t : t.to(dtype); }

// Note [LoRA's own backward]: out = y + cast(scale * (cast(x) A^T) B^T), one node; the product in
// `product`'s dtype (Note [LoRA's product in bf16]), A's when it is A's own.
class LoraAdd : public torch::autograd::Function<LoraAdd> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& y, const at::Tensor& x,
                            const at::Tensor& down_master, const at::Tensor& up_master, double scale,
                            int64_t product) {
    const auto dt = static_cast<at::ScalarType>(product);
    const at::Tensor xa = in_dtype(x, dt), down = in_dtype(down_master, dt), up = in_dtype(up_master, dt);
    const at::Tensor h = at::linear(xa, down);
    at::Tensor d = at::linear(h, up);
    if (scale != 1.0) d = d * scale;
    if (d.scalar_type() != y.scalar_type()) d = d.to(y.scalar_type());
    ctx->save_for_backward({xa, h, down, up});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["w_dtype"] = static_cast<int64_t>(down_master.scalar_type());
    return y + d;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &xa = saved[0], &h = saved[1], &down = saved[2], &up = saved[3];
    const double scale = ctx->saved_data["scale"].toDouble();
    const auto x_dtype = static_cast<at::ScalarType>(ctx->saved_data["x_dtype"].toInt());
    const at::Tensor& gy = grads[0];
    // Back through the casts and the scale, then the two linears on 2-D views, as autograd's
    // ToCopyBackward, MulBackward, UnsafeViewBackward and MmBackward compute them.
    at::Tensor g = gy.scalar_type() == up.scalar_type() ? gy : gy.to(up.scalar_type());
    if (scale != 1.0) g = g * scale;
    const at::Tensor g2 = g.reshape({-1, up.size(0)});
    const at::Tensor h2 = h.reshape({-1, down.size(0)});
    const at::Tensor x2 = xa.reshape({-1, down.size(1)});
    // A weight used transposed gets its gradient as (g^T input), contiguous like the weight
    // (mm_mat2_backward's branch for a column-major operand): AccumulateGrad keeps it, no copy.
    // In the product's dtype, back to the masters' (fp32) for AdamW.
    const auto w_dtype = static_cast<at::ScalarType>(ctx->saved_data["w_dtype"].toInt());
    const at::Tensor grad_up = in_dtype(at::mm(g2.t(), h2), w_dtype);
    const at::Tensor gh = at::mm(g2, up);
    const at::Tensor grad_down = in_dtype(at::mm(gh.t(), x2), w_dtype);
    at::Tensor grad_x;
    if (ctx->needs_input_grad(1)) {
      grad_x = at::mm(gh, down).view(xa.sizes());
      if (grad_x.scalar_type() != x_dtype) grad_x = grad_x.to(x_dtype);
    }
    return {gy, grad_x, grad_down, grad_up, at::Tensor(), at::Tensor()};
  }
};

// The ranks of a group's adapters: each A's rows (dim 0), each B's columns (dim 1).
std::vector<int64_t> ranks_of(at::TensorList tensors, int64_t dim = 0) {
  std::vector<int64_t> ranks;
  for (const at::Tensor& t : tensors) ranks.push_back(t.size(dim));
  return ranks;
}

// Note [LoRA's shared down-projection]: out_i = y_i + cast(scale_i (cast(x) A^T)_i B_i^T), with
// A = cat(A_1 .. A_n), one node for the n adapters of one input.
class LoraGroupAdd : public torch::autograd::Function<LoraGroupAdd> {
 public:
  // The lists as at::TensorList: apply() counts each of their tensors as an input (a
  // variable_list would be one opaque argument, its tensors given no gradient).
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                                                at::TensorList ys, at::TensorList downs, at::TensorList up_masters,
                                                std::vector<double> scales, int64_t product) {
    const auto dt = static_cast<at::ScalarType>(product);
    const at::Tensor xa = in_dtype(x, dt);
    const at::Tensor down = in_dtype(at::cat(downs), dt);
    std::vector<at::Tensor> ups;
    for (const at::Tensor& up : up_masters) ups.push_back(in_dtype(up, dt));
    const at::Tensor h = at::linear(xa, down);
    // One split for the n slices (n narrows would be n ops on the host).
    const std::vector<at::Tensor> hs = at::split_with_sizes(h, ranks_of(downs), -1);
    torch::autograd::variable_list outs;
    for (size_t i = 0; i < ys.size(); ++i) {
      at::Tensor d = at::linear(hs[i], ups[i]);
      if (scales[i] != 1.0) d = d * scales[i];
      if (d.scalar_type() != ys[i].scalar_type()) d = d.to(ys[i].scalar_type());
      outs.push_back(ys[i] + d);
    }
    torch::autograd::variable_list saved{xa, h, down};
    saved.insert(saved.end(), ups.begin(), ups.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["scales"] = c10::List<double>(scales);
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["w_dtype"] = static_cast<int64_t>(downs[0].scalar_type());
    return outs;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &xa = saved[0], &h = saved[1], &down = saved[2];
    const auto scales = ctx->saved_data["scales"].toDoubleList();
    const auto x_dtype = static_cast<at::ScalarType>(ctx->saved_data["x_dtype"].toInt());
    const auto w_dtype = static_cast<at::ScalarType>(ctx->saved_data["w_dtype"].toInt());
    const size_t n = grads.size();
    const std::vector<at::Tensor> ups(saved.begin() + 3, saved.end());
    const std::vector<int64_t> ranks = ranks_of(ups, 1);
    const std::vector<at::Tensor> h2s = at::split_with_sizes(h.reshape({-1, down.size(0)}), ranks, 1);
    const at::Tensor x2 = xa.reshape({-1, down.size(1)});
    torch::autograd::variable_list grad_ups, ghs;
    for (size_t i = 0; i < n; ++i) {
      const at::Tensor& up = ups[i];
      at::Tensor g = grads[i].scalar_type() == up.scalar_type() ? grads[i] : grads[i].to(up.scalar_type());
      if (scales[i] != 1.0) g = g * scales[i];
      const at::Tensor g2 = g.reshape({-1, up.size(0)});
      grad_ups.push_back(in_dtype(at::mm(g2.t(), h2s[i]), w_dtype));  // back to the masters' dtype
      ghs.push_back(at::mm(g2, up));
    }
    // One GEMM for the gradients of every A (row blocks of one contiguous tensor, each laid out as
    // its A: AccumulateGrad keeps them), one for x's.
    const at::Tensor gh = at::cat(ghs, 1);
    const at::Tensor grad_down = in_dtype(at::mm(gh.t(), x2), w_dtype);
    at::Tensor grad_x;
    if (ctx->needs_input_grad(0)) {
      grad_x = at::mm(gh, down).view(xa.sizes());
      if (grad_x.scalar_type() != x_dtype) grad_x = grad_x.to(x_dtype);
    }
    torch::autograd::variable_list out{grad_x};
    for (size_t i = 0; i < n; ++i) out.push_back(grads[i]);
    for (at::Tensor& grad : at::split_with_sizes(grad_down, ranks, 0)) out.push_back(std::move(grad));
    out.insert(out.end(), grad_ups.begin(), grad_ups.end());
    out.emplace_back();  // scales
    out.emplace_back();  // product
    return out;
  }
};

}  // namespace

std::vector<at::Tensor> add_lora_group(const std::vector<at::Tensor>& ys, const at::Tensor& x,
                                       const std::vector<const LoraAdapter*>& adapters) {
  XLTUNE_CHECK(!adapters.empty() && ys.size() == adapters.size(), "LoRA: ", ys.size(), " outputs for ",
               adapters.size(), " adapters");
  bool any_requires_grad = x.requires_grad();
  for (size_t i = 0; i < ys.size(); ++i)
    any_requires_grad = any_requires_grad || ys[i].requires_grad() || adapters[i]->down.requires_grad() ||
                        adapters[i]->up.requires_grad();
  if (!(at::GradMode::is_enabled() && any_requires_grad) || adapters.size() == 1) {
    std::vector<at::Tensor> out;
    for (size_t i = 0; i < ys.size(); ++i) out.push_back(adapters[i]->add_to(ys[i], x));
    return out;
  }
  torch::autograd::variable_list downs, ups;
  std::vector<double> scales;
  for (const LoraAdapter* a : adapters) {
    XLTUNE_CHECK(a->product_dtype() == adapters[0]->product_dtype(), "LoRA: one group's adapters need one product dtype");
    downs.push_back(a->down);
    ups.push_back(a->up);
    scales.push_back(a->scale);
  }
  return LoraGroupAdd::apply(x, at::TensorList(ys), at::TensorList(downs), at::TensorList(ups), scales,
                             static_cast<int64_t>(adapters[0]->product_dtype()));
}

at::Tensor LoraAdapter::add_to(const at::Tensor& y, const at::Tensor& x) const {
  const bool records = at::GradMode::is_enabled() &&
                       (x.requires_grad() || y.requires_grad() || down.requires_grad() || up.requires_grad());
  if (!records) return y + delta(x);
  return LoraAdd::apply(y, x, down, up, scale, static_cast<int64_t>(product_dtype()));
}

const std::vector<std::string>& lora_projections() {
  static const std::vector<std::string> names{"to_q", "to_k", "to_v", "to_out.0"};
  return names;
}

std::vector<at::Tensor> UNetLora::parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& s : sites_) {
    out.push_back(s.adapter->down);
    out.push_back(s.adapter->up);
  }
  return out;
}

int64_t UNetLora::parameter_count() const {
  int64_t n = 0;
  for (const auto& t : parameters()) n += t.numel();
  return n;
}

void UNetLora::initialize(uint64_t seed) {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < sites_.size(); ++i) {
    LoraAdapter& a = *sites_[i].adapter;
    at::Generator g = keyed_generator(seed, 0, i, DrawKind::kLoraInit);
    at::Tensor values = at::randn(a.down.sizes(), g, at::TensorOptions().dtype(at::kFloat)) * (1.0 / rank_);
    a.down.copy_(values);
    a.up.zero_();
  }
}

void UNetLora::set_product_dtype(at::ScalarType dtype) {
  for (const auto& s : sites_) s.adapter->product = dtype;
}

namespace {
std::vector<std::pair<std::string, AttentionImpl*>> attentions_of(UNetImpl& unet) {
  std::vector<std::pair<std::string, AttentionImpl*>> out;
  for (const auto& item : unet.named_modules("", /*include_self=*/false)) {
    if (auto* attn = dynamic_cast<AttentionImpl*>(item.value().get())) out.emplace_back(item.key(), attn);
  }
  return out;
}
}  // namespace

UNetLora attach_lora(UNetImpl& unet, int64_t rank, double alpha, const at::TensorOptions& options) {
  XLTUNE_CHECK(rank > 0, "LoRA: expected a positive rank, got ", rank);
  XLTUNE_CHECK(alpha > 0, "LoRA: expected a positive alpha, got ", alpha);
  UNetLora lora;
  lora.rank_ = rank;
  lora.alpha_ = alpha;
  for (auto& [path, attn] : attentions_of(unet)) {
    XLTUNE_CHECK(!attn->lora_q, "LoRA: ", path, " already has adapters");
    std::shared_ptr<LoraAdapter>* slots[] = {&attn->lora_q, &attn->lora_k, &attn->lora_v, &attn->lora_out};
    nn::Linear* linears[] = {&attn->to_q, &attn->to_k, &attn->to_v, &attn->to_out};
    for (int p = 0; p < 4; ++p) {
      const at::Tensor& w = (*linears[p])->weight;
      XLTUNE_CHECK(rank <= std::min(w.size(0), w.size(1)), "--lora_rank ", rank, " is larger than ", path, ".",
                   lora_projections()[p], " (", w.size(1), " in, ", w.size(0), " out)");
      auto adapter = std::make_shared<LoraAdapter>();
      adapter->down = at::empty({rank, w.size(1)}, options);
      adapter->up = at::empty({w.size(0), rank}, options);
      adapter->scale = alpha / static_cast<double>(rank);
      *slots[p] = adapter;
      lora.sites_.push_back(LoraSite{path, lora_projections()[p], adapter});
    }
  }
  XLTUNE_CHECK(!lora.sites_.empty(), "LoRA: the UNet has no attention layers to adapt");
  return lora;
}

UNetLora attach_lora_weights(UNetImpl& unet, const std::vector<LoraTensors>& weights, const at::TensorOptions& options,
                             double multiplier) {
  std::map<std::string, AttentionImpl*> by_path;
  for (auto& [path, attn] : attentions_of(unet)) by_path[path] = attn;
  std::vector<std::string> problems;
  UNetLora lora;
  at::NoGradGuard no_grad;
  for (const auto& w : weights) {
    auto it = by_path.find(w.module);
    const auto& names = lora_projections();
    const auto p = std::find(names.begin(), names.end(), w.projection) - names.begin();
    if (it == by_path.end() || p == static_cast<long>(names.size())) {
      problems.push_back(w.module + "." + w.projection + " (no such attention projection)");
      continue;
    }
    AttentionImpl* attn = it->second;
    nn::Linear* linears[] = {&attn->to_q, &attn->to_k, &attn->to_v, &attn->to_out};
    std::shared_ptr<LoraAdapter>* slots[] = {&attn->lora_q, &attn->lora_k, &attn->lora_v, &attn->lora_out};
    const at::Tensor& base = (*linears[p])->weight;
    if (w.down.dim() != 2 || w.up.dim() != 2 || w.down.size(1) != base.size(1) || w.up.size(0) != base.size(0) ||
        w.up.size(1) != w.down.size(0)) {
      problems.push_back(xltune::str(w.module, ".", w.projection, " (down ", w.down.sizes(), ", up ", w.up.sizes(),
                             " for a ", base.size(1), " -> ", base.size(0), " projection)"));
      continue;
    }
    auto adapter = std::make_shared<LoraAdapter>();
    adapter->down = w.down.to(options).contiguous().clone();
    adapter->up = w.up.to(options).contiguous().clone();
    adapter->scale = w.scale * multiplier;
    *slots[p] = adapter;
    lora.sites_.push_back(LoraSite{w.module, w.projection, adapter});
    lora.rank_ = std::max<int64_t>(lora.rank_, w.down.size(0));
  }
  if (!problems.empty()) {
    detach_lora(unet);
    XLTUNE_FAIL("LoRA: ", problems.size(), " of ", weights.size(), " adapters do not fit this UNet: ",
                name_list(problems, 4), " (a LoRA trained for another model?)");
  }
  return lora;
}

void fuse_lora_projections(UNetImpl& unet, bool fused) {
  for (auto& [path, attn] : attentions_of(unet)) attn->lora_fused = fused;
}

void detach_lora(UNetImpl& unet) {
  for (auto& [path, attn] : attentions_of(unet)) {
    attn->lora_q.reset();
    attn->lora_k.reset();
    attn->lora_v.reset();
    attn->lora_out.reset();
  }
}

}  // namespace xltune
