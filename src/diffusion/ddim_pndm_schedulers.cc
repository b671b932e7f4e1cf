// The alpha-space samplers: DDIM (Song et al. 2020, eta 0 as the SDXL pipelines call it) and
// PNDM's pseudo linear multistep (PLMS, Liu et al. 2022; SDXL's config skips the Runge-Kutta
// warm-up), as diffusers' DDIMScheduler and PNDMScheduler compute them (Note [Schedulers as
// diffusers computes them]). The sample is x = sqrt(a_t) x0 + sqrt(1 - a_t) eps; no input scaling.
#include <ATen/ATen.h>

#include "core/check.h"
#include "diffusion/scheduler_internal.h"

namespace xltune::scheduler_detail {
namespace {

class AlphaScheduler : public Scheduler {
 public:
  AlphaScheduler(const SchedulerConfig& c, const char* class_name, bool alpha_to_one_default)
      : Scheduler(c), fields_(c, class_name) {
    fields_.require_bool("thresholding", false, false, "dynamic thresholding");
    final_alpha_ = fields_.boolean("set_alpha_to_one", alpha_to_one_default) ? at::scalar_tensor(1.0, at::kFloat)
                                                                              : schedule_.alphas_cumprod()[0];
    v_prediction_ = fields_.v_prediction();
    spacing_ = fields_.string("timestep_spacing", "leading");
    offset_ = fields_.integer("steps_offset", 0);
  }

  at::Tensor add_noise(const at::Tensor& x0, const at::Tensor& noise, int64_t index) const override {
    const int64_t t = static_cast<int64_t>(timesteps_[index].item<float>());
    at::Tensor ts = at::full({x0.size(0)}, t, at::TensorOptions().dtype(at::kLong));
    return schedule_.add_noise(x0, noise, ts);
  }

 protected:
  // alphas_cumprod at t, or the final alpha below 0.
  at::Tensor alpha_at(int64_t t) const { return t >= 0 ? schedule_.alphas_cumprod()[t] : final_alpha_; }
  int64_t ratio() const { return schedule_.num_train_timesteps() / num_inference_steps_; }

  // The integer timesteps of N steps, ascending (DDIM's and PNDM's spacings).
  std::vector<int64_t> ascending_timesteps(int64_t N) const {
    const int64_t T = schedule_.num_train_timesteps();
    std::vector<int64_t> t;
    if (spacing_ == "linspace") {
      for (double v : linspace(0, static_cast<double>(T - 1), N)) t.push_back(static_cast<int64_t>(round_even(v)));
    } else if (spacing_ == "leading") {
      for (int64_t i = 0; i < N; ++i) t.push_back(i * (T / N) + offset_);
    } else if (spacing_ == "trailing") {
      for (double v : arange_down(static_cast<double>(T), static_cast<double>(T) / static_cast<double>(N)))
        t.insert(t.begin(), static_cast<int64_t>(round_even(v)) - 1);
    } else {
      fields_.fail("\"timestep_spacing\" '" + spacing_ + "': expected linspace, leading or trailing");
    }
    return t;
  }

  ClassFields fields_;
  at::Tensor final_alpha_;
  bool v_prediction_ = false;
  std::string spacing_;
  int64_t offset_ = 0;
};

class DdimScheduler : public AlphaScheduler {
 public:
  DdimScheduler(const SchedulerConfig& c, int64_t N) : AlphaScheduler(c, "DDIMScheduler", true) {
    clip_ = fields_.boolean("clip_sample", true);
    clip_range_ = fields_.number("clip_sample_range", 1.0);
    num_inference_steps_ = N;
    std::vector<int64_t> t = ascending_timesteps(N);
    timesteps_ = at::tensor(std::vector<int64_t>(t.rbegin(), t.rend())).to(at::kFloat);
  }

  at::Tensor step(const at::Tensor& model_output, int64_t i, const at::Tensor& sample, at::Generator&) override {
    const auto dev = sample.device();
    const auto t = static_cast<int64_t>(timesteps_[i].item<float>());
    at::Tensor a_t = alpha_at(t).to(dev), a_prev = alpha_at(t - ratio()).to(dev);
    at::Tensor b_t = 1 - a_t;
    at::Tensor x0, eps;
    if (v_prediction_) {
      x0 = a_t.pow(0.5) * sample - b_t.pow(0.5) * model_output;
      eps = a_t.pow(0.5) * model_output + b_t.pow(0.5) * sample;
    } else {
      x0 = (sample - b_t.pow(0.5) * model_output) / a_t.pow(0.5);
      eps = model_output;
    }
    if (clip_) x0 = x0.clamp(-clip_range_, clip_range_);
    // eta = 0: no variance, so std_dev_t is 0 and the step is deterministic.
    at::Tensor direction = (1 - a_prev).pow(0.5) * eps;
    return a_prev.pow(0.5) * x0 + direction;
  }

 private:
  bool clip_ = true;
  double clip_range_ = 1.0;
};

class PndmScheduler : public AlphaScheduler {
 public:
  PndmScheduler(const SchedulerConfig& c, int64_t N) : AlphaScheduler(c, "PNDMScheduler", false) {
    fields_.require_bool("skip_prk_steps", false, true, "the Runge-Kutta warm-up steps; SDXL's config skips them");
    num_inference_steps_ = N;
    const std::vector<int64_t> a = ascending_timesteps(N);
    // PLMS: the timesteps descending, the second to last one twice.
    std::vector<int64_t> plms(a.begin(), a.end() - 1);
    if (a.size() >= 2) plms.push_back(a[a.size() - 2]);
    plms.push_back(a.back());
    timesteps_ = at::tensor(std::vector<int64_t>(plms.rbegin(), plms.rend())).to(at::kFloat);
  }

  at::Tensor step(const at::Tensor& model_output_in, int64_t i, const at::Tensor& sample_in, at::Generator&) override {
    int64_t t = static_cast<int64_t>(timesteps_[i].item<float>());
    int64_t prev_t = t - ratio();
    at::Tensor model_output = model_output_in, sample = sample_in;
    if (counter_ != 1) {
      if (ets_.size() > 3) ets_.erase(ets_.begin(), ets_.end() - 3);
      ets_.push_back(model_output);
    } else {
      prev_t = t;
      t = t + ratio();
    }
    const size_t n = ets_.size();
    if (n == 1 && counter_ == 0) {
      cur_sample_ = sample;
    } else if (n == 1 && counter_ == 1) {
      model_output = (model_output + ets_.back()) / 2;
      sample = cur_sample_;
      cur_sample_ = at::Tensor();
    } else if (n == 2) {
      model_output = (3 * ets_[n - 1] - ets_[n - 2]) / 2;
    } else if (n == 3) {
      model_output = (23 * ets_[n - 1] - 16 * ets_[n - 2] + 5 * ets_[n - 3]) / 12;
    } else {
      model_output = (1.0 / 24) * (55 * ets_[n - 1] - 59 * ets_[n - 2] + 37 * ets_[n - 3] - 9 * ets_[n - 4]);
    }
    at::Tensor out = prev_sample(sample, t, prev_t, model_output);
    ++counter_;
    return out;
  }

 private:
  // Formula (9) of the PNDM paper.
  at::Tensor prev_sample(const at::Tensor& sample, int64_t t, int64_t prev_t, at::Tensor model_output) const {
    const auto dev = sample.device();
    at::Tensor a_t = alpha_at(t).to(dev), a_prev = alpha_at(prev_t).to(dev);
    at::Tensor b_t = 1 - a_t, b_prev = 1 - a_prev;
    if (v_prediction_) model_output = a_t.pow(0.5) * model_output + b_t.pow(0.5) * sample;
    at::Tensor sample_coeff = (a_prev / a_t).pow(0.5);
    at::Tensor denom = a_t * b_prev.pow(0.5) + (a_t * b_t * a_prev).pow(0.5);
    return sample_coeff * sample - (a_prev - a_t) * model_output / denom;
  }

  int64_t counter_ = 0;
  std::vector<at::Tensor> ets_;  // the last model outputs (at most 4)
  at::Tensor cur_sample_;
};

}  // namespace

std::unique_ptr<Scheduler> make_ddim(const SchedulerConfig& c, int64_t N) { return std::make_unique<DdimScheduler>(c, N); }
std::unique_ptr<Scheduler> make_pndm(const SchedulerConfig& c, int64_t N) { return std::make_unique<PndmScheduler>(c, N); }

}  // namespace xltune::scheduler_detail
