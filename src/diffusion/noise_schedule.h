// The forward (noising) process that SDXL was trained with, built from the model's own
// scheduler/scheduler_config.json exactly as diffusers' DDPMScheduler builds it:
//   betas:  "linear"        linspace(beta_start, beta_end, T)                       (fp32)
//           "scaled_linear" linspace(sqrt(beta_start), sqrt(beta_end), T)^2         (SDXL)
//           "squaredcos_cap_v2"  from the cosine alpha-bar, capped at 0.999
//           "sigmoid"       sigmoid(linspace(-6, 6, T)) * (end - start) + start
//           or "trained_betas"; optionally rescaled to zero terminal SNR
//   alphas_cumprod = cumprod(1 - betas)                                              (fp32)
// The scheduler class named in the file does not matter (SDXL ships EulerDiscreteScheduler's
// config): training noise depends only on these fields, as in diffusers' training scripts
// (DDPMScheduler.from_pretrained(model, subfolder="scheduler")).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace xltune {

enum class PredictionType { kEpsilon, kVPrediction };

struct NoiseScheduleConfig {
  int64_t num_train_timesteps = 1000;
  double beta_start = 0.0001;  // diffusers' DDPMScheduler defaults; SDXL's file says 0.00085
  double beta_end = 0.02;      // SDXL: 0.012
  std::string beta_schedule = "linear";  // SDXL: scaled_linear
  std::vector<double> trained_betas;
  bool rescale_betas_zero_snr = false;
  PredictionType prediction_type = PredictionType::kEpsilon;

  static NoiseScheduleConfig from_json_file(const std::string& path);
  static NoiseScheduleConfig from_json_text(const std::string& text, const std::string& source);
};

class NoiseSchedule {
 public:
  explicit NoiseSchedule(const NoiseScheduleConfig& config);

  const NoiseScheduleConfig& config() const { return config_; }
  int64_t num_train_timesteps() const { return config_.num_train_timesteps; }
  const at::Tensor& alphas_cumprod() const { return alphas_cumprod_; }  // fp32 [T], CPU

  // sqrt(a_t) x0 + sqrt(1 - a_t) noise, in x0's dtype (diffusers' add_noise).
  at::Tensor add_noise(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& timesteps) const;
  // sqrt(a_t) noise - sqrt(1 - a_t) x0 (diffusers' get_velocity).
  at::Tensor velocity(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& timesteps) const;
  // What the model is trained to predict: noise, or the velocity.
  at::Tensor target(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& timesteps) const;
  // a_t / (1 - a_t) per timestep, fp32 (diffusers' compute_snr).
  at::Tensor snr(const at::Tensor& timesteps) const;

 private:
  // sqrt(a_t) and sqrt(1 - a_t) for each timestep, shaped to broadcast against `like`.
  std::pair<at::Tensor, at::Tensor> coefficients(const at::Tensor& like, const at::Tensor& timesteps) const;
  // alphas_cumprod on `device`, copied there once: a training step on a GPU then indexes it
  // where its timesteps are, with no copy of the table and no read of the timesteps by the host
  // (issue 18: no host synchronisation inside the step). On the CPU it is the table itself and
  // nothing is cached; a schedule that caches a GPU copy belongs to one thread (each rank's
  // trainer and pipeline holds its own).
  const at::Tensor& table_on(const at::Device& device) const;
  NoiseScheduleConfig config_;
  at::Tensor alphas_cumprod_;
  mutable at::Tensor alphas_cumprod_on_device_;
};

}  // namespace xltune
