// DPM-Solver++ (Lu et al. 2022), multistep, order 2, as diffusers' DPMSolverMultistepScheduler
// computes it with its defaults (algorithm_type dpmsolver++, solver_type midpoint,
// lower_order_final, final sigma 0); KarrasDPM is the same with Karras sigmas, as the
// reference's predict.py overrides it (Note [Schedulers as diffusers computes them]).
// The model output is turned into a data prediction x0; a step from sigma_s to sigma_t with
// lambda = log(alpha / sigma) is
//   first order:  x_t = (sigma_t / sigma_s) x - alpha_t (e^-h - 1) D0,          h = lambda_t - lambda_s
//   second order: ... - 0.5 alpha_t (e^-h - 1) D1 (midpoint), D1 = (D0 - D_prev) / r0, r0 = h_prev / h
#include <ATen/ATen.h>

#include <cmath>

#include "core/check.h"
#include "diffusion/scheduler_internal.h"

namespace xltune::scheduler_detail {
namespace {

class DpmSolverScheduler : public Scheduler {
 public:
  DpmSolverScheduler(const SchedulerConfig& c, int64_t N, bool karras)
      : Scheduler(c), fields_(c, karras ? "DPMSolverMultistepScheduler with Karras sigmas" : "DPMSolverMultistepScheduler") {
    fields_.require_bool("thresholding", false, false, "dynamic thresholding");
    for (const char* k : {"use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas"})
      fields_.require_bool(k, false, false, "only the standard and Karras sigmas are");
    if (fields_.string("algorithm_type", "dpmsolver++") != "dpmsolver++")
      fields_.fail("\"algorithm_type\": only dpmsolver++ is implemented");
    order_ = fields_.integer("solver_order", 2);
    if (order_ != 1 && order_ != 2) fields_.fail("\"solver_order\": 1 or 2 are implemented");
    const std::string solver = fields_.string("solver_type", "midpoint");
    if (solver != "midpoint" && solver != "heun") fields_.fail("\"solver_type\": expected midpoint or heun");
    heun_ = solver == "heun";
    lower_order_final_ = fields_.boolean("lower_order_final", true);
    euler_at_final_ = fields_.boolean("euler_at_final", false);
    const std::string last = fields_.string("final_sigmas_type", "zero");
    if (last != "zero" && last != "sigma_min") fields_.fail("\"final_sigmas_type\": expected zero or sigma_min");
    final_zero_ = last == "zero";
    v_prediction_ = fields_.v_prediction();
    const bool use_karras = karras || fields_.boolean("use_karras_sigmas", false);

    const int64_t T = schedule_.num_train_timesteps();
    const at::Tensor& acp = schedule_.alphas_cumprod();
    // last_timestep: T minus the timesteps whose lambda is below lambda_min_clipped.
    const double lambda_min = fields_.number("lambda_min_clipped", -INFINITY);
    at::Tensor lambda_t = at::log(at::sqrt(acp)) - at::log(at::sqrt(1 - acp));
    const int64_t clipped = (lambda_t < lambda_min).sum().item<int64_t>();
    const int64_t last_t = T - clipped;
    const std::string spacing = fields_.string("timestep_spacing", "linspace");
    const int64_t offset = fields_.integer("steps_offset", 0);
    std::vector<double> t;
    if (spacing == "linspace") {
      std::vector<double> v = linspace(0, static_cast<double>(last_t - 1), N + 1);
      for (int64_t k = N; k >= 1; --k) t.push_back(round_even(v[k]));
    } else if (spacing == "leading") {
      const int64_t ratio = last_t / (N + 1);
      for (int64_t k = N; k >= 1; --k) t.push_back(static_cast<double>(k * ratio + offset));
    } else if (spacing == "trailing") {
      for (double v : arange_down(static_cast<double>(last_t), static_cast<double>(T) / static_cast<double>(N)))
        t.push_back(round_even(v) - 1);
    } else {
      fields_.fail("\"timestep_spacing\" '" + spacing + "': expected linspace, leading or trailing");
    }
    const std::vector<double> table = train_sigmas(acp);
    std::vector<double> s;
    if (use_karras) {
      s = karras_sigmas(table.front(), table.back(), N);
      t = sigma_to_t(s, table);
      if (c.noise.beta_schedule != "squaredcos_cap_v2")
        for (double& v : t) v = round_even(v);
    } else {
      s = interp(t, table);
    }
    s.push_back(final_zero_ ? 0.0 : table.front());
    // The timesteps are int64 in diffusers (a fractional Karras timestep is truncated).
    for (double& v : t) v = std::trunc(v);
    sigmas_ = fp32_tensor(s);
    timesteps_ = fp32_tensor(t);
    num_inference_steps_ = static_cast<int64_t>(t.size());
  }

  at::Tensor step(const at::Tensor& model_output, int64_t i, const at::Tensor& sample, at::Generator&) override {
    const int64_t n = timesteps_.size(0);
    const bool lower_order_final =
        i == n - 1 && (euler_at_final_ || (lower_order_final_ && n < 15) || final_zero_);
    at::Tensor x0 = data_prediction(model_output, sample, i);
    previous_ = latest_;
    latest_ = x0;
    at::Tensor x = sample.to(at::kFloat);
    at::Tensor out;
    if (order_ == 1 || lower_order_nums_ < 1 || lower_order_final) out = first_order(x0, i, x);
    else out = second_order(i, x);
    if (lower_order_nums_ < order_) ++lower_order_nums_;
    return out.to(model_output.scalar_type());
  }

  at::Tensor add_noise(const at::Tensor& x0, const at::Tensor& noise, int64_t index) const override {
    auto [alpha, sigma] = alpha_sigma(sigmas_[index].to(x0.device()).to(x0.scalar_type()));
    return alpha * x0 + sigma * noise;
  }

 private:
  static std::pair<at::Tensor, at::Tensor> alpha_sigma(const at::Tensor& sigma) {
    at::Tensor alpha = (sigma.pow(2) + 1).pow(0.5).reciprocal();
    return {alpha, sigma * alpha};
  }
  static at::Tensor lambda(const std::pair<at::Tensor, at::Tensor>& as) { return at::log(as.first) - at::log(as.second); }

  at::Tensor data_prediction(const at::Tensor& model_output, const at::Tensor& sample, int64_t i) const {
    auto [alpha, sigma] = alpha_sigma(sigmas_[i].to(sample.device()));
    if (v_prediction_) return alpha * sample - sigma * model_output;
    return (sample - sigma * model_output) / alpha;
  }

  at::Tensor first_order(const at::Tensor& d0, int64_t i, const at::Tensor& x) const {
    const auto dev = x.device();
    auto t = alpha_sigma(sigmas_[i + 1].to(dev)), s = alpha_sigma(sigmas_[i].to(dev));
    at::Tensor h = lambda(t) - lambda(s);
    return (t.second / s.second) * x - (t.first * (at::exp(-h) - 1.0)) * d0;
  }

  at::Tensor second_order(int64_t i, const at::Tensor& x) const {
    const auto dev = x.device();
    auto t = alpha_sigma(sigmas_[i + 1].to(dev)), s0 = alpha_sigma(sigmas_[i].to(dev)),
         s1 = alpha_sigma(sigmas_[i - 1].to(dev));
    at::Tensor h = lambda(t) - lambda(s0), h0 = lambda(s0) - lambda(s1);
    at::Tensor r0 = h0 / h;
    const at::Tensor& d0 = latest_;
    at::Tensor d1 = r0.reciprocal() * (latest_ - previous_);
    at::Tensor e = at::exp(-h) - 1.0;
    at::Tensor out = (t.second / s0.second) * x - (t.first * e) * d0;
    if (heun_) return out + (t.first * (e / h + 1.0)) * d1;
    return out - 0.5 * (t.first * e) * d1;
  }

  ClassFields fields_;
  int64_t order_ = 2;
  bool heun_ = false, lower_order_final_ = true, euler_at_final_ = false, final_zero_ = true, v_prediction_ = false;
  at::Tensor sigmas_;
  at::Tensor latest_, previous_;  // the data predictions of this step and the one before
  int lower_order_nums_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_dpm_solver(const SchedulerConfig& c, int64_t N, bool karras) {
  return std::make_unique<DpmSolverScheduler>(c, N, karras);
}

}  // namespace xltune::scheduler_detail
