#include "models/lora.h"

#include <ATen/ATen.h>

#include <map>

#include "core/check.h"
#include "core/keyed_random.h"
#include "core/state_dict.h"
#include "models/attention.h"
#include "models/unet.h"

namespace xltune {

at::Tensor LoraAdapter::delta(const at::Tensor& x) const {
  at::Tensor h = at::linear(at::linear(x.to(down.scalar_type()), down), up);
  return (scale == 1.0 ? h : h * scale).to(x.scalar_type());
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

void detach_lora(UNetImpl& unet) {
  for (auto& [path, attn] : attentions_of(unet)) {
    attn->lora_q.reset();
    attn->lora_k.reset();
    attn->lora_v.reset();
    attn->lora_out.reset();
  }
}

}  // namespace xltune
