// The sigma-space ("k-diffusion") samplers: Euler, Euler ancestral and Heun, as diffusers'
// EulerDiscreteScheduler, EulerAncestralDiscreteScheduler and HeunDiscreteScheduler compute them
// (Note [Schedulers as diffusers computes them] in scheduler.h). The sample lives at noise level
// sigma: x = x0 + sigma * eps; the UNet sees x / sqrt(sigma^2 + 1).
#include <ATen/ATen.h>

#include "core/check.h"
#include "diffusion/scheduler_internal.h"

namespace xltune::scheduler_detail {
namespace {

// What the three share: the sigma table (one more entry than timesteps, ending at 0) and the
// initial noise, scaling and noising that follow from it.
class SigmaScheduler : public Scheduler {
 public:
  SigmaScheduler(const SchedulerConfig& c, const char* class_name) : Scheduler(c), fields_(c, class_name) {
    fields_.require_bool("thresholding", false, false, "dynamic thresholding");
    fields_.require_bool("use_exponential_sigmas", false, false, "exponential sigmas");
    fields_.require_bool("use_beta_sigmas", false, false, "beta sigmas");
    if (fields_.string("timestep_type", "discrete") != "discrete")
      fields_.fail("\"timestep_type\": only \"discrete\" is implemented");
    spacing_ = fields_.string("timestep_spacing", "linspace");
    v_prediction_ = fields_.v_prediction();
  }

  at::Tensor init_noise_sigma() const override {
    at::Tensor max_sigma = sigmas_.max();
    if (spacing_ == "linspace" || spacing_ == "trailing") return max_sigma;
    return (max_sigma.pow(2) + 1).pow(0.5);
  }

  at::Tensor scale_model_input(const at::Tensor& sample, int64_t index) const override {
    at::Tensor sigma = sigmas_[index];
    return sample / (sigma.pow(2) + 1).pow(0.5);
  }

  at::Tensor add_noise(const at::Tensor& x0, const at::Tensor& noise, int64_t index) const override {
    at::Tensor sigma = sigmas_[index].to(x0.device()).to(x0.scalar_type());
    return x0 + noise * sigma;
  }

 protected:
  // The timesteps and sigmas of N steps (Euler's and Heun's set_timesteps before Heun doubles them).
  void schedule(int64_t N, bool karras_allowed) {
    const int64_t T = schedule_.num_train_timesteps();
    num_inference_steps_ = N;
    std::vector<double> t = k_timesteps(spacing_, T, N, fields_.integer("steps_offset", 0), fields_);
    const std::vector<double> table = train_sigmas(schedule_.alphas_cumprod());
    std::vector<double> s = interp(t, table);
    if (karras_allowed && fields_.boolean("use_karras_sigmas", false)) {
      s = karras_sigmas(s.back(), s.front(), N);
      t = sigma_to_t(s, table);
    }
    timesteps_list_ = t;
    sigma_list_ = s;
  }

  ClassFields fields_;
  std::string spacing_;
  bool v_prediction_ = false;
  at::Tensor sigmas_;
  std::vector<double> timesteps_list_, sigma_list_;

  // The denoised estimate at noise level sigma.
  at::Tensor pred_original(const at::Tensor& model_output, const at::Tensor& sample, const at::Tensor& sigma) const {
    if (!v_prediction_) return sample - sigma * model_output;
    return model_output * (-sigma / (sigma.pow(2) + 1).pow(0.5)) + (sample / (sigma.pow(2) + 1));
  }
};

class EulerScheduler : public SigmaScheduler {
 public:
  EulerScheduler(const SchedulerConfig& c, int64_t N) : SigmaScheduler(c, "EulerDiscreteScheduler") {
    if (fields_.string("interpolation_type", "linear") != "linear")
      fields_.fail("\"interpolation_type\": only \"linear\" is implemented");
    schedule(N, true);
    const std::string last = fields_.string("final_sigmas_type", "zero");
    if (last != "zero" && last != "sigma_min") fields_.fail("\"final_sigmas_type\": expected zero or sigma_min");
    double sigma_last = 0;
    if (last == "sigma_min") sigma_last = train_sigmas(schedule_.alphas_cumprod()).front();
    sigma_list_.push_back(sigma_last);
    sigmas_ = fp32_tensor(sigma_list_);
    timesteps_ = fp32_tensor(timesteps_list_);
  }

  at::Tensor step(const at::Tensor& model_output, int64_t i, const at::Tensor& sample_in, at::Generator&) override {
    at::Tensor sample = sample_in.to(at::kFloat);
    at::Tensor sigma = sigmas_[i].to(sample.device());
    at::Tensor sigma_hat = sigma * 1.0;  // s_churn = 0: gamma = 0
    at::Tensor x0 = pred_original(model_output, sample, sigma_hat);
    at::Tensor derivative = (sample - x0) / sigma_hat;
    at::Tensor dt = sigmas_[i + 1].to(sample.device()) - sigma_hat;
    return (sample + derivative * dt).to(model_output.scalar_type());
  }
};

class EulerAncestralScheduler : public SigmaScheduler {
 public:
  EulerAncestralScheduler(const SchedulerConfig& c, int64_t N) : SigmaScheduler(c, "EulerAncestralDiscreteScheduler") {
    schedule(N, false);
    sigma_list_.push_back(0.0);
    sigmas_ = fp32_tensor(sigma_list_);
    timesteps_ = fp32_tensor(timesteps_list_);
  }

  at::Tensor step(const at::Tensor& model_output, int64_t i, const at::Tensor& sample_in, at::Generator& gen) override {
    at::Tensor sample = sample_in.to(at::kFloat);
    const auto dev = sample.device();
    at::Tensor sigma = sigmas_[i].to(dev);
    at::Tensor x0 = pred_original(model_output, sample, sigma);
    at::Tensor from = sigma, to = sigmas_[i + 1].to(dev);
    at::Tensor sigma_up = (to.pow(2) * (from.pow(2) - to.pow(2)) / from.pow(2)).pow(0.5);
    at::Tensor sigma_down = (to.pow(2) - sigma_up.pow(2)).pow(0.5);
    at::Tensor derivative = (sample - x0) / sigma;
    at::Tensor prev = sample + derivative * (sigma_down - sigma);
    // Drawn at every step, the last one too, on the CPU generator (diffusers' randn_tensor).
    at::Tensor noise = step_noise(model_output, gen);
    return (prev + noise * sigma_up).to(model_output.scalar_type());
  }
};

// Heun's method: each step but the last is an Euler step to the next sigma and a correction
// there, two model calls, so sigmas and timesteps are repeated (2N - 1 model calls).
class HeunScheduler : public SigmaScheduler {
 public:
  HeunScheduler(const SchedulerConfig& c, int64_t N) : SigmaScheduler(c, "HeunDiscreteScheduler") {
    clip_ = fields_.boolean("clip_sample", false);
    clip_range_ = fields_.number("clip_sample_range", 1.0);
    schedule(N, true);
    std::vector<double> s = {sigma_list_.front()}, t = {timesteps_list_.front()};
    for (size_t k = 1; k < sigma_list_.size(); ++k) s.insert(s.end(), 2, sigma_list_[k]);
    s.push_back(0.0);
    for (size_t k = 1; k < timesteps_list_.size(); ++k) t.insert(t.end(), 2, timesteps_list_[k]);
    sigmas_ = fp32_tensor(s);
    timesteps_ = fp32_tensor(t);
  }

  int order() const override { return 2; }

  at::Tensor step(const at::Tensor& model_output, int64_t i, const at::Tensor& sample, at::Generator&) override {
    const auto dev = sample.device();
    const bool first_order = !dt_.defined();
    at::Tensor sigma = sigmas_[first_order ? i : i - 1].to(dev);
    at::Tensor sigma_next = sigmas_[first_order ? i + 1 : i].to(dev);
    at::Tensor sigma_hat = sigma * 1;
    at::Tensor x0 = pred_original(model_output, sample, first_order ? sigma_hat : sigma_next);
    if (clip_) x0 = x0.clamp(-clip_range_, clip_range_);
    if (first_order) {
      at::Tensor derivative = (sample - x0) / sigma_hat;
      dt_ = sigma_next - sigma_hat;
      prev_derivative_ = derivative;
      sample_ = sample;
      return sample + derivative * dt_;
    }
    at::Tensor derivative = (prev_derivative_ + (sample - x0) / sigma_next) / 2;
    at::Tensor out = sample_ + derivative * dt_;
    dt_ = at::Tensor();
    prev_derivative_ = at::Tensor();
    sample_ = at::Tensor();
    return out;
  }

 private:
  bool clip_ = false;
  double clip_range_ = 1.0;
  at::Tensor dt_, prev_derivative_, sample_;  // the first half of a step, until its correction
};

}  // namespace

std::unique_ptr<Scheduler> make_euler(const SchedulerConfig& c, int64_t N) { return std::make_unique<EulerScheduler>(c, N); }
std::unique_ptr<Scheduler> make_euler_ancestral(const SchedulerConfig& c, int64_t N) {
  return std::make_unique<EulerAncestralScheduler>(c, N);
}
std::unique_ptr<Scheduler> make_heun(const SchedulerConfig& c, int64_t N) { return std::make_unique<HeunScheduler>(c, N); }

}  // namespace xltune::scheduler_detail
