#include "models/lora.h"

#include <ATen/ATen.h>

#include "core/check.h"
#include "core/keyed_random.h"
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

void detach_lora(UNetImpl& unet) {
  for (auto& [path, attn] : attentions_of(unet)) {
    attn->lora_q.reset();
    attn->lora_k.reset();
    attn->lora_v.reset();
    attn->lora_out.reset();
  }
}

}  // namespace xltune
