#include "diffusion/noise_schedule.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/config_reader.h"

namespace xltune {

NoiseScheduleConfig NoiseScheduleConfig::from_json_file(const std::string& path) {
  return from_json_text(read_file(path), path);
}

NoiseScheduleConfig NoiseScheduleConfig::from_json_text(const std::string& text, const std::string& source) {
  ConfigReader r(text, source);
  NoiseScheduleConfig c;
  c.num_train_timesteps = r.integer("num_train_timesteps", c.num_train_timesteps);
  XLTUNE_CHECK(c.num_train_timesteps >= 2, source, ": \"num_train_timesteps\": expected at least 2, got ",
               c.num_train_timesteps);
  c.beta_start = r.number("beta_start", c.beta_start);
  c.beta_end = r.number("beta_end", c.beta_end);
  c.beta_schedule = r.string("beta_schedule", c.beta_schedule);
  XLTUNE_CHECK(c.beta_schedule == "linear" || c.beta_schedule == "scaled_linear" ||
                   c.beta_schedule == "squaredcos_cap_v2" || c.beta_schedule == "sigmoid",
               source, ": \"beta_schedule\" '", c.beta_schedule,
               "': expected linear, scaled_linear, squaredcos_cap_v2 or sigmoid");
  if (r.has("trained_betas")) {
    const auto& tb = r.json()["trained_betas"];
    XLTUNE_CHECK(tb.is_array() && static_cast<int64_t>(tb.size()) == c.num_train_timesteps, source,
                 ": \"trained_betas\": expected a list of ", c.num_train_timesteps, " numbers");
    for (const auto& b : tb) {
      XLTUNE_CHECK(b.is_number(), source, ": \"trained_betas\": expected numbers");
      c.trained_betas.push_back(b.get<double>());
    }
  }
  c.rescale_betas_zero_snr = r.boolean("rescale_betas_zero_snr", false);
  const std::string prediction = r.string("prediction_type", "epsilon");
  XLTUNE_CHECK(prediction == "epsilon" || prediction == "v_prediction", source, ": \"prediction_type\" '", prediction,
               "': xltune trains epsilon or v_prediction models");
  c.prediction_type = prediction == "epsilon" ? PredictionType::kEpsilon : PredictionType::kVPrediction;
  if (c.trained_betas.empty() && c.beta_schedule != "squaredcos_cap_v2") {
    XLTUNE_CHECK(c.beta_start > 0 && c.beta_end > c.beta_start && c.beta_end < 1, source,
                 ": expected 0 < beta_start < beta_end < 1, got ", c.beta_start, " and ", c.beta_end);
  }
  return c;
}

namespace {

// diffusers' betas_for_alpha_bar(T, alpha_transform_type="cosine"), in double as Python does.
at::Tensor cosine_betas(int64_t T) {
  auto alpha_bar = [](double t) {
    double v = std::cos((t + 0.008) / 1.008 * M_PI / 2);
    return v * v;
  };
  std::vector<float> betas;
  for (int64_t i = 0; i < T; ++i) {
    double t1 = static_cast<double>(i) / T, t2 = static_cast<double>(i + 1) / T;
    betas.push_back(static_cast<float>(std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999)));
  }
  return at::tensor(betas, at::kFloat);
}

// diffusers' rescale_zero_terminal_snr (Lin et al. 2023, Algorithm 1).
at::Tensor rescale_zero_terminal_snr(const at::Tensor& betas) {
  at::Tensor alphas_bar_sqrt = at::cumprod(1.0 - betas, 0).sqrt();
  at::Tensor a0 = alphas_bar_sqrt[0].clone(), aT = alphas_bar_sqrt[-1].clone();
  alphas_bar_sqrt = (alphas_bar_sqrt - aT) * (a0 / (a0 - aT));
  at::Tensor alphas_bar = alphas_bar_sqrt.pow(2);
  at::Tensor alphas = at::cat({alphas_bar.slice(0, 0, 1), alphas_bar.slice(0, 1) / alphas_bar.slice(0, 0, -1)});
  return 1 - alphas;
}

}  // namespace

NoiseSchedule::NoiseSchedule(const NoiseScheduleConfig& c) : config_(c) {
  const int64_t T = c.num_train_timesteps;
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  at::Tensor betas;
  if (!c.trained_betas.empty()) {
    betas = at::tensor(c.trained_betas, at::kDouble).to(at::kFloat);
  } else if (c.beta_schedule == "linear") {
    betas = at::linspace(c.beta_start, c.beta_end, T, f32);
  } else if (c.beta_schedule == "scaled_linear") {
    betas = at::linspace(std::sqrt(c.beta_start), std::sqrt(c.beta_end), T, f32).pow(2);
  } else if (c.beta_schedule == "squaredcos_cap_v2") {
    betas = cosine_betas(T);
  } else {
    betas = at::sigmoid(at::linspace(-6, 6, T, f32)) * (c.beta_end - c.beta_start) + c.beta_start;
  }
  if (c.rescale_betas_zero_snr) betas = rescale_zero_terminal_snr(betas);
  alphas_cumprod_ = at::cumprod(1.0 - betas, 0);
  // As diffusers: a terminal alpha of exactly 0 would make the last SNR 0 and v-targets singular.
  if (c.rescale_betas_zero_snr) alphas_cumprod_[-1] = std::pow(2.0, -24);
}

std::pair<at::Tensor, at::Tensor> NoiseSchedule::coefficients(const at::Tensor& like, const at::Tensor& timesteps) const {
  XLTUNE_CHECK(timesteps.dim() == 1 && timesteps.size(0) == like.size(0), "noise schedule: expected one timestep per ",
               "sample (", like.size(0), "), got ", timesteps.sizes());
  // diffusers casts alphas_cumprod to the sample's dtype before taking roots.
  at::Tensor a = table_on(like.device()).to(like.scalar_type()).index_select(0, timesteps.to(like.device()));
  std::vector<int64_t> shape(like.dim(), 1);
  shape[0] = like.size(0);
  return {a.pow(0.5).view(shape), (1 - a).pow(0.5).view(shape)};
}

at::Tensor NoiseSchedule::add_noise(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& timesteps) const {
  auto [s, r] = coefficients(x0, timesteps);
  return s * x0 + r * noise;
}

at::Tensor NoiseSchedule::velocity(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& timesteps) const {
  auto [s, r] = coefficients(x0, timesteps);
  return s * noise - r * x0;
}

at::Tensor NoiseSchedule::target(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& timesteps) const {
  return config_.prediction_type == PredictionType::kEpsilon ? noise : velocity(x0, noise, timesteps);
}

at::Tensor NoiseSchedule::snr(const at::Tensor& timesteps) const {
  at::Tensor a = table_on(timesteps.device()).index_select(0, timesteps);
  at::Tensor alpha = a.pow(0.5), sigma = (1.0 - a).pow(0.5);
  return (alpha / sigma).pow(2);
}

const at::Tensor& NoiseSchedule::table_on(const at::Device& device) const {
  if (device == alphas_cumprod_.device()) return alphas_cumprod_;
  if (!alphas_cumprod_on_device_.defined() || alphas_cumprod_on_device_.device() != device)
    alphas_cumprod_on_device_ = alphas_cumprod_.to(device);
  return alphas_cumprod_on_device_;
}

}  // namespace xltune
