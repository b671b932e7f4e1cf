#include "diffusion/scheduler.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/config_reader.h"
#include "diffusion/scheduler_internal.h"

namespace xltune {

SchedulerConfig SchedulerConfig::from_json_text(const std::string& text, const std::string& source) {
  SchedulerConfig c;
  c.noise = NoiseScheduleConfig::from_json_text(text, source);
  c.fields = ConfigReader(text, source).json();
  c.source = source;
  return c;
}

const std::vector<std::string>& scheduler_names() {
  static const std::vector<std::string> names = {"K_EULER",    "K_EULER_ANCESTRAL", "DDIM", "DPMSolverMultistep",
                                                 "KarrasDPM", "HeunDiscrete",      "PNDM"};
  return names;
}

at::Tensor Scheduler::init_noise_sigma() const { return at::scalar_tensor(1.0, at::kFloat); }

at::Tensor Scheduler::step_noise(const at::Tensor& like, at::Generator& generator) const {
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  if (!rows_.defined()) return at::randn(like.sizes(), generator, f32).to(like.device()).to(like.scalar_type());
  std::vector<int64_t> shape = like.sizes().vec();
  shape[0] = full_batch_;
  return at::randn(shape, generator, f32).index_select(0, rows_).to(like.device()).to(like.scalar_type());
}

at::Tensor Scheduler::scale_model_input(const at::Tensor& sample, int64_t) const { return sample; }

std::unique_ptr<Scheduler> make_scheduler(const std::string& name, const SchedulerConfig& config, int64_t steps) {
  XLTUNE_CHECK(steps >= 1, "--num_inference_steps: expected 1 or more, got ", steps);
  XLTUNE_CHECK(steps <= config.noise.num_train_timesteps, "--num_inference_steps ", steps,
               ": the model was trained with ", config.noise.num_train_timesteps, " timesteps, so at most that many");
  using namespace scheduler_detail;
  if (name == "K_EULER") return make_euler(config, steps);
  if (name == "K_EULER_ANCESTRAL") return make_euler_ancestral(config, steps);
  if (name == "HeunDiscrete") return make_heun(config, steps);
  if (name == "DDIM") return make_ddim(config, steps);
  if (name == "DPMSolverMultistep") return make_dpm_solver(config, steps, false);
  if (name == "KarrasDPM") return make_dpm_solver(config, steps, true);
  if (name == "PNDM") return make_pndm(config, steps);
  std::string all;
  for (const auto& n : scheduler_names()) all += (all.empty() ? "" : ", ") + n;
  XLTUNE_FAIL("--scheduler '", name, "': expected one of ", all);
}

namespace scheduler_detail {

void ClassFields::fail(const std::string& what) const {
  XLTUNE_FAIL(c_.source, ": ", what, " (for ", class_, ")");
}

std::string ClassFields::string(const char* key, const std::string& fallback) const {
  if (!c_.fields.contains(key) || c_.fields[key].is_null()) return fallback;
  if (!c_.fields[key].is_string()) fail(std::string("\"") + key + "\": expected a string");
  return c_.fields[key].get<std::string>();
}

int64_t ClassFields::integer(const char* key, int64_t fallback) const {
  if (!c_.fields.contains(key) || c_.fields[key].is_null()) return fallback;
  if (!c_.fields[key].is_number_integer()) fail(std::string("\"") + key + "\": expected an integer");
  return c_.fields[key].get<int64_t>();
}

double ClassFields::number(const char* key, double fallback) const {
  if (!c_.fields.contains(key) || c_.fields[key].is_null()) return fallback;
  if (!c_.fields[key].is_number()) fail(std::string("\"") + key + "\": expected a number");
  return c_.fields[key].get<double>();
}

bool ClassFields::boolean(const char* key, bool fallback) const {
  if (!c_.fields.contains(key) || c_.fields[key].is_null()) return fallback;
  if (!c_.fields[key].is_boolean()) fail(std::string("\"") + key + "\": expected true or false");
  return c_.fields[key].get<bool>();
}

void ClassFields::require_bool(const char* key, bool fallback, bool expected, const char* what) const {
  if (boolean(key, fallback) != expected)
    fail(std::string("\"") + key + "\": " + (expected ? "false" : "true") + " is not implemented (" + what + ")");
}

bool ClassFields::v_prediction() const { return c_.noise.prediction_type == PredictionType::kVPrediction; }

std::vector<double> linspace(double start, double stop, int64_t n) {
  std::vector<double> y(n);
  if (n == 1) {
    y[0] = start;
    return y;
  }
  const double step = (stop - start) / static_cast<double>(n - 1);
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<double>(i) * step + start;
  y[n - 1] = stop;
  return y;
}

std::vector<double> arange_down(double start, double step) {
  const auto n = static_cast<int64_t>(std::ceil(start / step));
  const double delta = (start - step) - start;  // numpy fills with a[1] - a[0]
  std::vector<double> y(n);
  for (int64_t i = 0; i < n; ++i) y[i] = start + static_cast<double>(i) * delta;
  return y;
}

double round_even(double x) { return std::nearbyint(x); }

std::vector<double> k_timesteps(const std::string& spacing, int64_t T, int64_t N, int64_t steps_offset,
                                const ClassFields& f) {
  std::vector<double> t;
  if (spacing == "linspace") {
    for (double v : linspace(0, static_cast<double>(T - 1), N)) t.push_back(static_cast<float>(v));
    std::reverse(t.begin(), t.end());
  } else if (spacing == "leading") {
    const int64_t ratio = T / N;
    for (int64_t i = N - 1; i >= 0; --i) t.push_back(static_cast<float>(i * ratio) + static_cast<float>(steps_offset));
  } else if (spacing == "trailing") {
    for (double v : arange_down(static_cast<double>(T), static_cast<double>(T) / static_cast<double>(N)))
      t.push_back(static_cast<float>(round_even(v)) - 1.0f);
  } else {
    f.fail("\"timestep_spacing\" '" + spacing + "': expected linspace, leading or trailing");
  }
  return t;
}

std::vector<double> train_sigmas(const at::Tensor& alphas_cumprod) {
  at::Tensor s = ((1 - alphas_cumprod) / alphas_cumprod).pow(0.5).contiguous();
  const float* p = s.data_ptr<float>();
  return std::vector<double>(p, p + s.numel());
}

std::vector<double> interp(const std::vector<double>& x, const std::vector<double>& fp) {
  const auto n = static_cast<int64_t>(fp.size());
  std::vector<double> y;
  for (double v : x) {
    if (v <= 0) {
      y.push_back(fp[0]);
    } else if (v >= static_cast<double>(n - 1)) {
      y.push_back(fp[n - 1]);
    } else {
      const auto j = static_cast<int64_t>(std::floor(v));
      const double slope = fp[j + 1] - fp[j];  // the sample points are 1 apart
      y.push_back(slope * (v - static_cast<double>(j)) + fp[j]);
    }
  }
  return y;
}

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t n) {
  const double rho = 7.0;
  const double min_inv_rho = std::pow(sigma_min, 1 / rho), max_inv_rho = std::pow(sigma_max, 1 / rho);
  std::vector<double> s;
  for (double r : linspace(0, 1, n)) s.push_back(std::pow(max_inv_rho + r * (min_inv_rho - max_inv_rho), rho));
  return s;
}

std::vector<double> sigma_to_t(const std::vector<double>& sigmas, const std::vector<double>& table) {
  // log_sigmas is np.log of a float32 array: float32 values.
  std::vector<double> log_sigmas;
  for (double s : table) log_sigmas.push_back(std::log(static_cast<float>(s)));
  const auto n = static_cast<int64_t>(log_sigmas.size());
  std::vector<double> t;
  for (double sigma : sigmas) {
    const double log_sigma = std::log(std::max(sigma, 1e-10));
    // The last index whose log-sigma is at most this one (0 when none is), at most n - 2.
    int64_t low = 0;
    for (int64_t i = 0; i < n; ++i)
      if (log_sigma - log_sigmas[i] >= 0) low = i;
    low = std::min(low, n - 2);
    const double lo = log_sigmas[low], hi = log_sigmas[low + 1];
    const double w = std::clamp((lo - log_sigma) / static_cast<double>(static_cast<float>(lo - hi)), 0.0, 1.0);
    t.push_back((1 - w) * static_cast<double>(low) + w * static_cast<double>(low + 1));
  }
  return t;
}

at::Tensor fp32_tensor(const std::vector<double>& values) {
  return at::tensor(values, at::TensorOptions().dtype(at::kDouble)).to(at::kFloat);
}

}  // namespace scheduler_detail
}  // namespace xltune
