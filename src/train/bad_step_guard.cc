#include "train/bad_step_guard.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <vector>

#include "core/check.h"

namespace xltune {

BadStepGuard::BadStepGuard(double spike_factor) : spike_factor_(spike_factor) {
  XLTUNE_CHECK(std::isfinite(spike_factor) && (spike_factor == 0 || spike_factor > 1), "--grad_spike_factor must be 0 ",
               "(off) or above 1, got ", spike_factor);
}

double BadStepGuard::median_norm() const {
  if (recent_.empty()) return 0;
  std::vector<double> v(recent_.begin(), recent_.end());
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + mid, v.end());
  if (v.size() % 2 == 1) return v[mid];
  const double upper = v[mid];
  return (*std::max_element(v.begin(), v.begin() + mid) + upper) / 2;
}

double BadStepGuard::spike_threshold() const {
  if (spike_factor_ > 0 && static_cast<int64_t>(recent_.size()) >= kMinHistory) return spike_factor_ * median_norm();
  return std::numeric_limits<double>::infinity();
}

// The median of the accepted norms with one more, x, known only on the device: with the others
// sorted (S, m values), x's place among them decides which values are the middle ones, and each
// is a clamp of x: for m = 2k the middle of m + 1 values is clamp(x, S[k-1], S[k]); for m = 2k + 1
// the two middle ones are clamp(x, S[k-1], S[k]) and clamp(x, S[k], S[k+1]), averaged as
// median_norm() averages them. A clamp picks one of its values, so the result is median_norm()'s.
at::Tensor BadStepGuard::threshold_after(const at::Tensor& before_norm, const at::Tensor& before_taken) const {
  at::NoGradGuard no_grad;
  const double if_skipped = spike_threshold();
  // The accepted norms after accept(x): the oldest dropped once the window is full.
  std::vector<double> kept(recent_.begin() + (static_cast<int64_t>(recent_.size()) == kHistory ? 1 : 0), recent_.end());
  at::Tensor if_taken;
  if (spike_factor_ > 0 && static_cast<int64_t>(kept.size()) + 1 >= kMinHistory) {
    std::sort(kept.begin(), kept.end());
    const at::Tensor x = before_norm.to(at::kDouble);
    const size_t k = kept.size() / 2;
    const at::Tensor median = kept.size() % 2 == 0
                                  ? at::clamp(x, kept[k - 1], kept[k])
                                  : (at::clamp(x, kept[k - 1], kept[k]) + at::clamp(x, kept[k], kept[k + 1])) / 2;
    if_taken = median * spike_factor_;
  } else {
    if_taken = at::full({}, std::numeric_limits<double>::infinity(), before_norm.options().dtype(at::kDouble));
  }
  return at::where(before_taken.ne(0), if_taken, if_skipped);
}

at::Tensor BadStepGuard::verdict_on_device(const at::Tensor& grad_norm) const {
  at::NoGradGuard no_grad;
  const at::Tensor norm = grad_norm.to(at::kDouble);
  at::Tensor take = at::isfinite(norm);
  const double threshold = spike_threshold();
  if (std::isfinite(threshold)) take = at::logical_and(take, at::le(norm, threshold));
  return take.to(at::kFloat);
}

at::Tensor BadStepGuard::verdict_on_device(const at::Tensor& grad_norm, const at::Tensor& threshold) const {
  at::NoGradGuard no_grad;
  const at::Tensor norm = grad_norm.to(at::kDouble);
  return at::logical_and(at::isfinite(norm), at::le(norm, threshold)).to(at::kFloat);
}

std::string BadStepGuard::verdict(double grad_norm) const {
  if (!std::isfinite(grad_norm)) return "non-finite gradient";
  if (const double threshold = spike_threshold(); std::isfinite(threshold)) {
    const double median = median_norm();
    if (grad_norm > threshold) {
      std::ostringstream why;
      why << "gradient spike (norm " << grad_norm << " > " << spike_factor_ << " x median " << median << ")";
      return why.str();
    }
  }
  return "";
}

void BadStepGuard::accept(double grad_norm) {
  ++accepted_;
  skipped_in_a_row_ = 0;
  recent_.push_back(grad_norm);
  if (static_cast<int64_t>(recent_.size()) > kHistory) recent_.pop_front();
}

void BadStepGuard::skip() {
  ++skipped_in_a_row_;
  ++skipped_total_;
}

NamedTensors BadStepGuard::state_tensors() const {
  const auto i64 = at::TensorOptions().dtype(at::kLong);
  std::vector<double> norms(recent_.begin(), recent_.end());
  return {{"bad_step_guard.accepted", at::full({}, accepted_, i64)},
          {"bad_step_guard.skipped_in_a_row", at::full({}, skipped_in_a_row_, i64)},
          {"bad_step_guard.skipped_total", at::full({}, skipped_total_, i64)},
          {"bad_step_guard.recent_grad_norms",
           at::tensor(norms, at::TensorOptions().dtype(at::kDouble)).reshape({static_cast<int64_t>(norms.size())})}};
}

void BadStepGuard::load_state(const std::map<std::string, at::Tensor>& tensors, int64_t completed_steps) {
  recent_.clear();
  auto it = tensors.find("bad_step_guard.accepted");
  if (it == tensors.end()) {  // a checkpoint from before skipping existed: every step was taken
    accepted_ = completed_steps;
    skipped_in_a_row_ = skipped_total_ = 0;
    return;
  }
  const auto scalar = [&](const char* name) {
    auto found = tensors.find(name);
    XLTUNE_CHECK(found != tensors.end(), "checkpoint: no tensor '", name, "'");
    return found->second.item<int64_t>();
  };
  accepted_ = scalar("bad_step_guard.accepted");
  skipped_in_a_row_ = scalar("bad_step_guard.skipped_in_a_row");
  skipped_total_ = scalar("bad_step_guard.skipped_total");
  XLTUNE_CHECK(accepted_ >= 0 && accepted_ + skipped_total_ == completed_steps, "checkpoint: ", accepted_,
               " accepted and ", skipped_total_, " skipped steps do not add up to step ", completed_steps);
  auto norms = tensors.find("bad_step_guard.recent_grad_norms");
  XLTUNE_CHECK(norms != tensors.end(), "checkpoint: no tensor 'bad_step_guard.recent_grad_norms'");
  at::Tensor n = norms->second.to(at::kDouble).contiguous();
  for (int64_t i = 0; i < n.numel(); ++i) recent_.push_back(n.data_ptr<double>()[i]);
}

}  // namespace xltune
