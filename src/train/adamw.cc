#include "train/adamw.h"

#include <ATen/ATen.h>

#include <cmath>
#include <optional>

#include "core/check.h"
#include "core/keyed_random.h"

namespace xltune {

const char* adamw_kernel_name(AdamWKernel kernel) { return kernel == AdamWKernel::kFused ? "fused" : "foreach"; }

AdamW::AdamW(std::vector<AdamWGroup> groups, at::ScalarType state_dtype, uint64_t seed, AdamWKernel kernel)
    : groups_(std::move(groups)), state_dtype_(state_dtype), seed_(seed), kernel_(kernel) {
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

std::vector<at::Tensor> AdamW::present_grads() const {
  std::vector<at::Tensor> out;
  for (const auto& p : reduced_tensors())
    if (p.grad().defined()) out.push_back(p.grad());
  return out;
}

void AdamW::add_grad_norms(std::vector<at::Tensor>& norms) {
  at::NoGradGuard no_grad;
  const std::vector<at::Tensor> grads = present_grads();
  if (grads.empty()) return;
  for (auto& norm : at::_foreach_norm(grads, 2)) norms.push_back(std::move(norm));
}

void AdamW::scale_grads(const at::Tensor& coef) {
  at::NoGradGuard no_grad;
  const std::vector<at::Tensor> grads = present_grads();
  if (!grads.empty()) at::_foreach_mul_(grads, coef);
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

at::Tensor stochastic_round_with_noise(const at::Tensor& x, const at::Tensor& noise) {
  at::Tensor bits = x.contiguous().view(at::kInt);
  // Adding below bf16's last kept bit and truncating rounds up with probability equal to the
  // dropped fraction. Only finite values: an overflow of the exponent field into inf is not a
  // concern for Adam moments.
  at::Tensor rounded = (bits + noise.view(bits.sizes())).bitwise_and(static_cast<int32_t>(0xFFFF0000u));
  return rounded.view(at::kFloat).to(at::kBFloat16);
}

// Note [Rounding bits from a keyed hash]
// Stochastic rounding of bf16 moments takes 16 random bits per value, m's and v's. They come from
// a counter-based hash computed on the device, not from a generator per tensor: value i of the
// optimizer's state (its position in the state's values in a fixed order: AdamW's tensors in
// flat order, a ZeRO-1 rank's chunks in bucket order) gets splitmix64's finalizer of
// key + i * 0x9E3779B97F4A7C15, m the low 16 bits of it and v the next 16. The key (seed,
// training step, for ZeRO-1 the rank; draw_key) is a 0-dim int64 tensor on the device, written
// before the step (stage_training_step): the kernels a CUDA graph captured read each step's key
// from it, where a generator seeded on the host would replay its capture's bits every step. The
// bits do not depend on how the update is chunked, are the same on every device, and cost about
// twenty element-wise ops per chunk where a keyed generator per tensor took two random_ calls
// and a generator's set-up on the host per tensor. int64 tensors stand in for uint64: products
// wrap the same, and a logical right shift is the arithmetic one masked.
at::Tensor keyed_rounding_bits(const at::Tensor& key, int64_t first, int64_t count) {
  XLTUNE_CHECK(key.scalar_type() == at::kLong && key.dim() == 0, "rounding bits: the key must be a 0-dim int64 tensor");
  constexpr auto kGolden = static_cast<int64_t>(0x9E3779B97F4A7C15ull);
  constexpr auto kMix1 = static_cast<int64_t>(0xBF58476D1CE4E5B9ull);
  constexpr auto kMix2 = static_cast<int64_t>(0x94D049BB133111EBull);
  at::Tensor x = at::arange(first, first + count, key.options());
  x.mul_(kGolden).add_(key);
  const auto xor_shifted = [&x](int shift) {
    const int64_t low = (int64_t{1} << (64 - shift)) - 1;  // the bits a logical shift keeps
    x.bitwise_xor_(x.bitwise_right_shift(shift).bitwise_and_(low));
  };
  xor_shifted(30);
  x.mul_(kMix1);
  xor_shifted(27);
  x.mul_(kMix2);
  xor_shifted(31);
  return x;
}

std::pair<at::Tensor, at::Tensor> rounding_noise_of(const at::Tensor& bits) {
  return {bits.bitwise_and(0xFFFF).to(at::kInt), bits.bitwise_right_shift(16).bitwise_and_(0xFFFF).to(at::kInt)};
}

void AdamW::step(double lr_factor, int64_t training_step, const at::Tensor& apply) {
  at::NoGradGuard no_grad;
  XLTUNE_CHECK(pending_.size() < 2, "AdamW: step() with two steps unsettled");
  // The foreach kernel's bias corrections are host numbers from the host counts: it needs the
  // verdict now. On the CPU that read costs nothing; on a GPU it is the step's one sync inside
  // the update (the fused kernel, the default there, takes the verdict on the device).
  at::Tensor on_device = apply;
  if (apply.defined() && kernel_ == AdamWKernel::kForeach) {
    if (apply.item<float>() == 0) return;
    on_device = at::Tensor();
  }
  // The key of the step's rounding bits: staged before (outside a capture) where the learning
  // rates are (the Trainer's steps, which may be captured; Optimizer::stage_training_step).
  if (state_dtype_ == at::kBFloat16 && (!rounding_key_.defined() || staged_training_step_ != training_step)) {
    XLTUNE_CHECK(!device_learning_rates_, "AdamW: step ", training_step,
                 " with device learning rates: its rounding key must be staged before (stage_training_step)");
    stage_training_step(training_step);
  }
  std::vector<size_t> waiting;  // counted by settle()
  size_t flat = 0;
  for (auto& g : groups_) {
    std::vector<size_t> stepped;  // flat indices of the tensors updated now
    for (size_t i = 0; i < g.params.size(); ++i, ++flat) {
      if (g.frozen || !g.params[i].grad().defined()) continue;
      AdamWTensorState& s = state_[flat];
      if (!s.exp_avg.defined()) {
        s.exp_avg = at::zeros_like(g.params[i], g.params[i].options().dtype(state_dtype_));
        s.exp_avg_sq = at::zeros_like(g.params[i], g.params[i].options().dtype(state_dtype_));
      }
      // The fused kernel's count: the step before this one, made where it first runs.
      if (kernel_ == AdamWKernel::kFused && !s.device_step.defined())
        s.device_step = at::full({}, static_cast<double>(s.step),
                                 at::TensorOptions().dtype(at::kFloat).device(g.params[i].device()));
      if (on_device.defined())
        waiting.push_back(flat);
      else
        s.step += 1;
      stepped.push_back(flat);
    }
    if (!stepped.empty()) update(g, flat - g.params.size(), stepped, lr_factor, on_device);
  }
  if (on_device.defined()) pending_.push_back(waiting);
  last_pending_ = waiting;
}

std::string AdamW::capture_blocker() const {
  if (kernel_ != AdamWKernel::kFused) return "the foreach AdamW kernel reads the verdict and step counts on the host";
  size_t flat = 0;
  for (const auto& g : groups_)
    for (size_t i = 0; i < g.params.size(); ++i, ++flat)
      if (!g.frozen && (!state_[flat].exp_avg.defined() || !state_[flat].device_step.defined()))
        return "a trained tensor has no AdamW state yet";
  return "";
}

void AdamW::use_device_learning_rates() {
  device_lr_.clear();
  device_learning_rates_ = kernel_ == AdamWKernel::kFused;  // the foreach kernel's rates are host numbers
  if (!device_learning_rates_) return;
  for (const auto& g : groups_) {
    const at::Device device = g.params.empty() ? at::Device(at::kCPU) : g.params.front().device();
    // CUDA's kernel reads a float32 learning rate; the CPU's reads the tensor as a double, so a
    // float64 one there keeps the host's value and the static step is the eager step bit for bit.
    device_lr_.push_back(at::zeros({}, at::TensorOptions().dtype(device.is_cpu() ? at::kDouble : at::kFloat).device(device)));
  }
}

void AdamW::stage_learning_rates(const EitherWay& lr_factor) {
  XLTUNE_CHECK(device_learning_rates_, "AdamW: stage_learning_rates without use_device_learning_rates (fused kernel)");
  for (size_t k = 0; k < groups_.size(); ++k) {
    const double lr = groups_[k].hyper.lr;
    EitherWay{lr * lr_factor.if_skipped, lr * lr_factor.if_taken, lr_factor.before_taken}.write_into(device_lr_[k]);
  }
  staged_lr_factor_ = lr_factor.if_skipped;
}

void AdamW::replayed_step() {
  XLTUNE_CHECK(pending_.size() < 2, "AdamW: a replayed step with two steps unsettled");
  pending_.push_back(last_pending_);
}

void AdamW::settle(bool applied) {
  if (pending_.empty()) return;  // the foreach kernel counted at step()
  if (applied)
    for (size_t flat : pending_.front()) state_[flat].step += 1;
  pending_.pop_front();
}

// The header's arithmetic over the group's stepped tensors with the optimizer's kernel: one
// _foreach_ op per line (a multi-tensor kernel per line on a GPU; on the CPU the single-tensor
// kernels, so the same bits as torch's single-tensor AdamW), or the fused kernel, whose step
// counts are the tensors' device steps, advanced together by one _foreach_add_.
// Note [AdamW's bf16 moments in one pass]: the chunk's bf16 moments are widened to fp32 with one
// cat and one cast each (the update works on views of the two flat buffers) and rounded back with
// one stochastic-rounding pass over each buffer and one _foreach_copy_, where a pass per tensor
// took about a dozen kernels a tensor. The random bits are Note [Rounding bits from a keyed
// hash]'s, one hash per run of consecutive tensors in the chunk (all of it, unless a tensor
// without a gradient lies inside it).
AdamW::BfMoments AdamW::stage_bf16_moments(const std::vector<size_t>& stepped, size_t begin, size_t end) const {
  BfMoments out;
  std::vector<at::Tensor> m16, v16;
  for (size_t k = begin; k < end; ++k) {
    const AdamWTensorState& s = state_[stepped[k]];
    m16.push_back(s.exp_avg.reshape({-1}));
    v16.push_back(s.exp_avg_sq.reshape({-1}));
    out.offsets.push_back(out.values);
    out.values += s.exp_avg.numel();
  }
  out.m_flat = at::cat(m16).to(at::kFloat);
  out.v_flat = at::cat(v16).to(at::kFloat);
  for (size_t k = begin; k < end; ++k) {
    const at::Tensor& like = state_[stepped[k]].exp_avg;
    const int64_t offset = out.offsets[k - begin];
    out.m.push_back(out.m_flat.narrow(0, offset, like.numel()).view(like.sizes()));
    out.v.push_back(out.v_flat.narrow(0, offset, like.numel()).view(like.sizes()));
  }
  return out;
}

void AdamW::stage_training_step(int64_t training_step) {
  if (state_dtype_ != at::kBFloat16) return;
  if (!rounding_key_.defined()) {
    at::Device device(at::kCPU);
    for (const auto& g : groups_)
      if (!g.params.empty()) device = g.params.front().device();
    rounding_key_ = at::zeros({}, at::TensorOptions().dtype(at::kLong).device(device));
    value_offsets_.clear();
    int64_t values = 0;
    for (const auto& g : groups_)
      for (const auto& p : g.params) value_offsets_.push_back(values), values += p.numel();
  }
  const uint64_t key = draw_key(seed_, static_cast<uint64_t>(training_step), 0, DrawKind::kRounding);
  rounding_key_.fill_(static_cast<int64_t>(key));
  staged_training_step_ = training_step;
}

void AdamW::round_bf16_moments(const BfMoments& staged, const std::vector<size_t>& stepped, size_t begin,
                               size_t end) {
  std::vector<at::Tensor> runs;  // the bits of each run of consecutive tensors
  for (size_t run = begin, k = begin + 1; run < end; ++k) {
    if (k < end && stepped[k] == stepped[k - 1] + 1) continue;
    const int64_t count = (k < end ? staged.offsets[k - begin] : staged.values) - staged.offsets[run - begin];
    runs.push_back(keyed_rounding_bits(rounding_key_, value_offsets_[stepped[run]], count));
    run = k;
  }
  auto [noise_m, noise_v] = rounding_noise_of(runs.size() == 1 ? runs.front() : at::cat(runs));
  runs.clear();
  std::vector<at::Tensor> targets_m, targets_v;
  for (size_t k = begin; k < end; ++k) {
    targets_m.push_back(state_[stepped[k]].exp_avg);
    targets_v.push_back(state_[stepped[k]].exp_avg_sq);
  }
  const auto round_into = [&](const at::Tensor& flat, const at::Tensor& noise, const std::vector<at::Tensor>& targets) {
    at::Tensor rounded = stochastic_round_with_noise(flat, noise);
    std::vector<at::Tensor> parts;
    for (size_t k = 0; k < targets.size(); ++k)
      parts.push_back(rounded.narrow(0, staged.offsets[k], targets[k].numel()).view(targets[k].sizes()));
    at::_foreach_copy_(targets, parts);
  };
  round_into(staged.m_flat, noise_m, targets_m);
  round_into(staged.v_flat, noise_v, targets_v);
}

void AdamW::update(const AdamWGroup& g, size_t first, const std::vector<size_t>& stepped, double lr_factor,
                   const at::Tensor& apply) {
  at::Tensor device_lr;
  if (device_learning_rates_) {
    XLTUNE_CHECK(lr_factor == staged_lr_factor_, "AdamW: the learning-rate factor staged (", staged_lr_factor_,
                 ") is not the step's (", lr_factor, ")");
    device_lr = device_lr_.at(static_cast<size_t>(&g - groups_.data()));
  }
  at::Tensor found_inf;
  if (kernel_ == AdamWKernel::kFused) {
    std::vector<at::Tensor> device_steps;
    for (size_t flat : stepped) device_steps.push_back(state_[flat].device_step);
    if (apply.defined()) {  // counts advance by the verdict; the kernel skips where it is 0
      at::_foreach_add_(device_steps, apply);
      found_inf = 1 - apply;
    } else {
      at::_foreach_add_(device_steps, 1);
    }
  }
  // Note [AdamW's temporaries]: bf16 moments are updated through fp32 copies and the foreach
  // kernel makes its denominators, both as large as the tensors they update: a whole group at
  // once would need 2-3 x 4 B per parameter on top of the state (20-30 GB for SDXL's UNet, which
  // a 48 GB A40 with bf16 state does not have). So the group goes in chunks of at most
  // update_chunk_values_ values (a tensor larger than that alone); the fused kernel on fp32
  // state works in place and takes the group at once. Per value the arithmetic is the same.
  const bool temporaries = state_dtype_ == at::kBFloat16 || kernel_ == AdamWKernel::kForeach;
  const auto numel = [&](size_t k) { return g.params[stepped[k] - first].numel(); };
  for (size_t begin = 0, end = 0; begin < stepped.size(); begin = end) {
    end = begin + 1;  // the chunk's first tensor, whatever its size
    for (int64_t values = numel(begin);
         end < stepped.size() && (!temporaries || values + numel(end) <= update_chunk_values_); ++end)
      values += numel(end);
    update_chunk(g, first, stepped, begin, end, g.hyper.lr * lr_factor, device_lr, found_inf);
  }
}

void AdamW::update_chunk(const AdamWGroup& g, size_t first, const std::vector<size_t>& stepped, size_t begin,
                         size_t end, double lr, const at::Tensor& device_lr, const at::Tensor& found_inf) {
  const bool bf16 = state_dtype_ == at::kBFloat16;
  std::vector<at::Tensor> params, grads, m, v, device_steps;
  std::vector<int64_t> steps;
  for (size_t k = begin; k < end; ++k) {
    const at::Tensor& p = g.params[stepped[k] - first];
    const AdamWTensorState& s = state_[stepped[k]];
    params.push_back(p);
    if (!bf16) {
      m.push_back(s.exp_avg);
      v.push_back(s.exp_avg_sq);
    }
    const at::Tensor& grad = p.grad();
    grads.push_back(grad.scalar_type() == at::kFloat ? grad : grad.to(at::kFloat));
    steps.push_back(s.step);
    if (kernel_ == AdamWKernel::kFused) device_steps.push_back(s.device_step);
  }
  BfMoments staged;
  if (bf16) {
    staged = stage_bf16_moments(stepped, begin, end);
    m = staged.m, v = staged.v;
  }
  if (kernel_ == AdamWKernel::kFused && device_lr.defined())
    adamw_fused_update(g.hyper, device_lr, params, grads, m, v, device_steps, found_inf);
  else if (kernel_ == AdamWKernel::kFused)
    adamw_fused_update(g.hyper, lr, params, grads, m, v, device_steps, found_inf);
  else
    adamw_foreach_update(g.hyper, lr, params, grads, m, v, steps);
  if (bf16) round_bf16_moments(staged, stepped, begin, end);
  ++chunks_;
}

void adamw_foreach_update(const AdamWHyper& h, double lr, const std::vector<at::Tensor>& params,
                          const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& m,
                          const std::vector<at::Tensor>& v, const std::vector<int64_t>& steps) {
  XLTUNE_CHECK(grads.size() == params.size() && m.size() == params.size() && v.size() == params.size() &&
                   steps.size() == params.size(),
               "AdamW: ", params.size(), " tensors, ", grads.size(), " gradients, ", steps.size(), " step counts");
  if (params.empty()) return;
  std::vector<at::Scalar> sqrt_bias_correction2, minus_step_size;
  for (int64_t step : steps) {
    const double bias_correction1 = 1 - std::pow(h.beta1, static_cast<double>(step));
    const double bias_correction2 = 1 - std::pow(h.beta2, static_cast<double>(step));
    sqrt_bias_correction2.emplace_back(std::sqrt(bias_correction2));
    minus_step_size.emplace_back(-(lr / bias_correction1));
  }
  at::_foreach_mul_(params, 1 - lr * h.weight_decay);
  at::_foreach_lerp_(m, grads, 1 - h.beta1);
  at::_foreach_mul_(v, h.beta2);
  at::_foreach_addcmul_(v, grads, grads, 1 - h.beta2);
  std::vector<at::Tensor> denom = at::_foreach_sqrt(v);
  at::_foreach_div_(denom, sqrt_bias_correction2);
  at::_foreach_add_(denom, h.eps);
  std::vector<at::Tensor> m_p = m;
  for (size_t k = 0; k < params.size(); ++k) {
    if (m_p[k].scalar_type() == params[k].scalar_type()) continue;
    m_p[k] = m_p[k].to(params[k].scalar_type());
    denom[k] = denom[k].to(params[k].scalar_type());
  }
  at::_foreach_addcdiv_(params, m_p, denom, minus_step_size);
}

namespace {

// adamw_fused_update's two forms: the learning rate `lr`, or `lr_tensor` when defined.
void fused_update(const AdamWHyper& h, double lr, const at::Tensor& lr_tensor, const std::vector<at::Tensor>& params,
                        const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& m,
                        const std::vector<at::Tensor>& v, const std::vector<at::Tensor>& steps,
                        const at::Tensor& found_inf) {
  XLTUNE_CHECK(grads.size() == params.size() && m.size() == params.size() && v.size() == params.size() &&
                   steps.size() == params.size(),
               "AdamW: ", params.size(), " tensors, ", grads.size(), " gradients, ", steps.size(), " step counts");
  if (params.empty()) return;
  // The kernel takes params, grads and moments of one dtype and device, each dense (on CUDA it
  // checks; on the CPU it reads their memory as the params' type, in order): anything else goes
  // through a contiguous copy in the moments' dtype, written back after.
  const at::ScalarType dtype = m.front().scalar_type();
  std::vector<at::Tensor> work_p = params, work_g = grads, work_m = m, work_v = v;
  std::vector<std::pair<at::Tensor, at::Tensor>> write_back;  // (where, from)
  const auto fit = [&](at::Tensor& t, bool written) {
    if (t.scalar_type() == dtype && t.is_contiguous()) return;
    at::Tensor copy = t.to(dtype).contiguous();  // a copy: one of the two differs
    if (written) write_back.emplace_back(t, copy);
    t = copy;
  };
  for (size_t k = 0; k < params.size(); ++k) {
    XLTUNE_CHECK(v[k].scalar_type() == dtype && grads[k].device() == params[k].device() &&
                     m[k].device() == params[k].device() && v[k].device() == params[k].device(),
                 "AdamW (fused): the moments of tensor ", k, " must share one dtype, and all its tensors one device");
    XLTUNE_CHECK(steps[k].dim() == 0 && steps[k].scalar_type() == at::kFloat && steps[k].device() == params[k].device(),
                 "AdamW (fused): tensor ", k, "'s step count must be a float32 0-dim tensor on its device");
    fit(work_p[k], true);
    fit(work_g[k], false);
    fit(work_m[k], true);
    fit(work_v[k], true);
  }
  const std::optional<at::Tensor> inf = found_inf.defined() ? std::optional<at::Tensor>(found_inf) : std::nullopt;
  if (lr_tensor.defined()) {
    XLTUNE_CHECK(lr_tensor.dim() == 0 && lr_tensor.device() == params[0].device() &&
                     (lr_tensor.scalar_type() == at::kFloat || (lr_tensor.is_cpu() && lr_tensor.scalar_type() == at::kDouble)),
                 "AdamW (fused): the learning rate must be a 0-dim tensor on the tensors' device, float32 (or float64 ",
                 "on the CPU)");
    at::_fused_adamw_(work_p, work_g, work_m, work_v, /*max_exp_avg_sqs=*/{}, steps, lr_tensor, h.beta1, h.beta2,
                      h.weight_decay, h.eps, /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/std::nullopt, inf);
  } else {
    at::_fused_adamw_(work_p, work_g, work_m, work_v, /*max_exp_avg_sqs=*/{}, steps, lr, h.beta1, h.beta2,
                      h.weight_decay, h.eps, /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/std::nullopt, inf);
  }
  for (auto& [where, from] : write_back) where.copy_(from);
}

}  // namespace

void adamw_fused_update(const AdamWHyper& h, double lr, const std::vector<at::Tensor>& params,
                        const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& m,
                        const std::vector<at::Tensor>& v, const std::vector<at::Tensor>& steps,
                        const at::Tensor& found_inf) {
  fused_update(h, lr, at::Tensor(), params, grads, m, v, steps, found_inf);
}

void adamw_fused_update(const AdamWHyper& h, const at::Tensor& lr, const std::vector<at::Tensor>& params,
                        const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& m,
                        const std::vector<at::Tensor>& v, const std::vector<at::Tensor>& steps,
                        const at::Tensor& found_inf) {
  fused_update(h, 0.0, lr, params, grads, m, v, steps, found_inf);
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
      s.device_step = at::Tensor();
      if (s.step == 0) {
        s.exp_avg = s.exp_avg_sq = at::Tensor();
        continue;
      }
      if (kernel_ == AdamWKernel::kFused)  // the fused kernel's count, exactly the host's
        s.device_step = at::full({}, static_cast<double>(s.step),
                                 at::TensorOptions().dtype(at::kFloat).device(g.params[i].device()));
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
