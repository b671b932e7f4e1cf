#include "train/ema.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "core/check.h"

namespace xltune {

std::string ema_state_name(const std::string& name) { return "ema." + name; }

ParameterEma::ParameterEma(std::vector<std::pair<std::string, at::Tensor>> params, double max_decay)
    : max_decay_(max_decay) {
  XLTUNE_CHECK(max_decay >= 0 && max_decay < 1, "--ema_decay ", max_decay, ": expected a value in [0, 1)");
  at::NoGradGuard no_grad;
  for (auto& [name, p] : params) {
    XLTUNE_CHECK(p.scalar_type() == at::kFloat, "EMA: ", name, " is ", p.scalar_type(),
                 "; the average is kept for fp32 trained tensors");
    names_.push_back(name);
    shadows_.push_back(p.detach().clone(at::MemoryFormat::Contiguous));
    params_.push_back(std::move(p));
  }
}

double ParameterEma::decay_at(double max_decay, int64_t step) {
  // diffusers: step = max(0, optimization_step - update_after_step - 1); 0 when step <= 0.
  const int64_t t = std::max<int64_t>(0, step - 1);
  if (t <= 0) return 0.0;
  const double warm = (1.0 + static_cast<double>(t)) / (10.0 + static_cast<double>(t));
  return std::max(std::min(warm, max_decay), 0.0);
}

void ParameterEma::update(int64_t step) {
  if (shadows_.empty()) return;
  update(at::full({}, 1.0 - decay_at(max_decay_, step), shadows_.front().options()));
}

void ParameterEma::update(const at::Tensor& weight) {
  if (shadows_.empty()) return;
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> live;
  live.reserve(params_.size());
  for (const auto& p : params_) live.push_back(p.detach());
  // EMAModel.step's torch._foreach_sub_(ema, torch._foreach_sub(ema, params), alpha=1 - decay),
  // with the weight on the device.
  std::vector<at::Tensor> change = at::_foreach_sub(shadows_, live);
  at::_foreach_mul_(change, weight);
  at::_foreach_sub_(shadows_, change);
}

int64_t ParameterEma::state_bytes() const {
  int64_t n = 0;
  for (const auto& s : shadows_) n += s.numel() * static_cast<int64_t>(s.element_size());
  return n;
}

NamedTensors ParameterEma::state_tensors() const {
  NamedTensors out;
  for (size_t i = 0; i < shadows_.size(); ++i)
    out.emplace_back(ema_state_name(names_[i]), shadows_[i].to(at::kCPU, at::kFloat).contiguous());
  return out;
}

void ParameterEma::load_state(const std::map<std::string, at::Tensor>& tensors) {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < shadows_.size(); ++i) {
    const std::string name = ema_state_name(names_[i]);
    auto it = tensors.find(name);
    XLTUNE_CHECK(it != tensors.end(), "checkpoint: no tensor '", name, "' (made without --use_ema?)");
    XLTUNE_CHECK(it->second.sizes() == shadows_[i].sizes(), "checkpoint: ", name, " is ", it->second.sizes(),
                 ", this run's is ", shadows_[i].sizes());
    shadows_[i].copy_(it->second);
  }
}

void ParameterEma::exchange() {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor held = params_[i].detach().clone();
    params_[i].detach().copy_(shadows_[i]);
    shadows_[i].copy_(held);
  }
}

ParameterEma::Swap::Swap(ParameterEma* ema) : ema_(ema) {
  if (ema_ != nullptr) ema_->exchange();
}

ParameterEma::Swap::~Swap() {
  if (ema_ != nullptr) ema_->exchange();
}

}  // namespace xltune
