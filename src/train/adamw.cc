#include "train/adamw.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/check.h"
#include "core/keyed_random.h"

namespace xltune {

AdamW::AdamW(std::vector<AdamWGroup> groups, at::ScalarType state_dtype, uint64_t seed)
    : groups_(std::move(groups)), state_dtype_(state_dtype), seed_(seed) {
  XLTUNE_CHECK(state_dtype == at::kFloat || state_dtype == at::kBFloat16,
               "AdamW: optimizer state must be fp32 or bf16");
  size_t n = 0;
  for (const auto& g : groups_) {
    XLTUNE_CHECK(g.names.size() == g.params.size(), "AdamW: group ", g.name, " has ", g.params.size(), " tensors but ",
                 g.names.size(), " names");
    XLTUNE_CHECK(g.hyper.lr > 0 && g.hyper.eps > 0 && g.hyper.weight_decay >= 0, "AdamW: group ", g.name,
                 ": expected a positive learning rate and eps and a non-negative weight decay");
    n += g.params.size();
  }
  state_.resize(n);
}

const AdamWGroup& AdamW::group(const std::string& name) const {
  for (const auto& g : groups_)
    if (g.name == name) return g;
  XLTUNE_FAIL("AdamW: no parameter group '", name, "'");
}

bool AdamW::set_frozen(const std::string& name, bool frozen) {
  for (auto& g : groups_)
    if (g.name == name) {
      g.frozen = frozen;
      return true;
    }
  return false;
}

std::vector<at::Tensor> AdamW::reduced_tensors() const {
  std::vector<at::Tensor> out;
  for (const auto& g : groups_)
    if (!g.frozen) out.insert(out.end(), g.params.begin(), g.params.end());
  return out;
}

void AdamW::add_grad_norms(std::vector<at::Tensor>& norms) {
  at::NoGradGuard no_grad;
  for (const auto& p : reduced_tensors())
    if (p.grad().defined()) norms.push_back(at::linalg_vector_norm(p.grad(), 2));
}

void AdamW::scale_grads(const at::Tensor& coef) {
  at::NoGradGuard no_grad;
  for (auto& p : reduced_tensors())
    if (p.grad().defined()) p.mutable_grad().mul_(coef);
}

std::vector<GroupSummary> AdamW::summaries() const {
  std::vector<GroupSummary> out;
  for (const auto& g : groups_) {
    GroupSummary s{g.name, g.hyper, static_cast<int64_t>(g.params.size()), 0};
    for (const auto& p : g.params) s.parameters += p.numel();
    out.push_back(s);
  }
  return out;
}

void AdamW::add_learning_rates(double lr_factor, std::vector<std::pair<std::string, double>>& out) const {
  for (const auto& g : groups_) out.emplace_back(g.name, g.frozen ? 0.0 : g.hyper.lr * lr_factor);
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& g : groups_)
    for (size_t i = 0; i < g.params.size(); ++i) out.emplace_back(g.names[i], g.params[i]);
  return out;
}

int64_t AdamW::parameter_count() const {
  int64_t n = 0;
  for (const auto& g : groups_)
    for (const auto& p : g.params) n += p.numel();
  return n;
}

at::Tensor stochastic_round_to_bf16(const at::Tensor& x, at::Generator& generator) {
  at::Tensor bits = x.contiguous().view(at::kInt);
  at::Tensor noise = at::randint(0, 1 << 16, bits.sizes(), generator, bits.options());
  // Adding below bf16's last kept bit and truncating rounds up with probability equal to the
  // dropped fraction. Only finite values: an overflow of the exponent field into inf is not a
  // concern for Adam moments.
  at::Tensor rounded = (bits + noise).bitwise_and(static_cast<int32_t>(0xFFFF0000u));
  return rounded.view(at::kFloat).to(at::kBFloat16);
}

void AdamW::step(double lr_factor, int64_t training_step) {
  at::NoGradGuard no_grad;
  size_t flat = 0;
  for (auto& g : groups_) {
    const AdamWHyper& h = g.hyper;
    const double lr = h.lr * lr_factor;
    for (size_t i = 0; i < g.params.size(); ++i, ++flat) {
      at::Tensor& p = g.params[i];
      const at::Tensor& grad = p.grad();
      if (g.frozen || !grad.defined()) continue;
      AdamWTensorState& s = state_[flat];
      const bool bf16 = state_dtype_ == at::kBFloat16;
      if (!s.exp_avg.defined()) {
        s.exp_avg = at::zeros_like(p, p.options().dtype(state_dtype_));
        s.exp_avg_sq = at::zeros_like(p, p.options().dtype(state_dtype_));
      }
      s.step += 1;
      p.mul_(1 - lr * h.weight_decay);
      at::Tensor m = bf16 ? s.exp_avg.to(at::kFloat) : s.exp_avg;
      at::Tensor v = bf16 ? s.exp_avg_sq.to(at::kFloat) : s.exp_avg_sq;
      const at::Tensor g32 = grad.scalar_type() == m.scalar_type() ? grad : grad.to(m.scalar_type());
      m.lerp_(g32, 1 - h.beta1);
      v.mul_(h.beta2).addcmul_(g32, g32, 1 - h.beta2);
      const double bias_correction1 = 1 - std::pow(h.beta1, static_cast<double>(s.step));
      const double bias_correction2 = 1 - std::pow(h.beta2, static_cast<double>(s.step));
      const double step_size = lr / bias_correction1;
      at::Tensor denom = (v.sqrt() / std::sqrt(bias_correction2)).add_(h.eps);
      p.addcdiv_(m.to(p.scalar_type()), denom.to(p.scalar_type()), -step_size);
      if (bf16) {
        at::Generator gen = at::globalContext().defaultGenerator(p.device()).clone();
        gen.set_current_seed(draw_key(seed_, static_cast<uint64_t>(training_step), flat, DrawKind::kRounding));
        s.exp_avg.copy_(stochastic_round_to_bf16(m, gen));
        s.exp_avg_sq.copy_(stochastic_round_to_bf16(v, gen));
      }
    }
  }
}

void AdamW::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) p.mutable_grad() = at::Tensor();
}

int64_t AdamW::state_bytes() const {
  int64_t n = 0;
  for (const auto& s : state_) {
    if (s.exp_avg.defined()) n += s.exp_avg.nbytes() + s.exp_avg_sq.nbytes();
  }
  return n;
}

NamedTensors AdamW::state_tensors() const {
  NamedTensors out;
  size_t flat = 0;
  for (const auto& g : groups_) {
    for (size_t i = 0; i < g.params.size(); ++i, ++flat) {
      const AdamWTensorState& s = state_[flat];
      out.emplace_back(g.names[i] + ".adamw_step", at::full({}, s.step, at::kLong));
      if (!s.exp_avg.defined()) continue;
      out.emplace_back(g.names[i] + ".exp_avg", s.exp_avg.detach().cpu().contiguous());
      out.emplace_back(g.names[i] + ".exp_avg_sq", s.exp_avg_sq.detach().cpu().contiguous());
    }
  }
  return out;
}

void AdamW::load_state_tensors(const std::map<std::string, at::Tensor>& tensors) {
  size_t flat = 0;
  for (const auto& g : groups_) {
    for (size_t i = 0; i < g.params.size(); ++i, ++flat) {
      AdamWTensorState& s = state_[flat];
      auto st = tensors.find(g.names[i] + ".adamw_step");
      s.step = st == tensors.end() ? 0 : st->second.item<int64_t>();
      if (s.step == 0) {
        s.exp_avg = s.exp_avg_sq = at::Tensor();
        continue;
      }
      auto m = tensors.find(g.names[i] + ".exp_avg"), v = tensors.find(g.names[i] + ".exp_avg_sq");
      XLTUNE_CHECK(m != tensors.end() && v != tensors.end(), "checkpoint: no optimizer moments for ", g.names[i]);
      const at::Tensor& p = g.params[i];
      XLTUNE_CHECK(m->second.numel() == p.numel() && v->second.numel() == p.numel(), "checkpoint: the moments of ",
                   g.names[i], " have ", m->second.numel(), " values, the tensor ", p.numel());
      s.exp_avg = m->second.reshape(p.sizes()).to(p.options().dtype(state_dtype_)).clone();
      s.exp_avg_sq = v->second.reshape(p.sizes()).to(p.options().dtype(state_dtype_)).clone();
    }
  }
}

}  // namespace xltune
