// What the scheduler files share (not part of the interface): reading a class's fields with
// its defaults, the timestep spacings and sigma tables as diffusers computes them (Note
// [Schedulers as diffusers computes them] in scheduler.h), and one constructor per class.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "diffusion/scheduler.h"

namespace xltune::scheduler_detail {

// The fields of one scheduler class, read from the config with the class's defaults.
class ClassFields {
 public:
  ClassFields(const SchedulerConfig& c, std::string class_name) : c_(c), class_(std::move(class_name)) {}
  std::string string(const char* key, const std::string& fallback) const;
  int64_t integer(const char* key, int64_t fallback) const;
  double number(const char* key, double fallback) const;
  bool boolean(const char* key, bool fallback) const;
  // Fails naming the field unless the config leaves it at `fallback`.
  void require_bool(const char* key, bool fallback, bool expected, const char* what) const;
  // "epsilon" or "v_prediction" (true for v).
  bool v_prediction() const;
  [[noreturn]] void fail(const std::string& what) const;

 private:
  const SchedulerConfig& c_;
  std::string class_;
};

// np.linspace(start, stop, n) in double.
std::vector<double> linspace(double start, double stop, int64_t n);
// np.arange(start, 0, -step) in double.
std::vector<double> arange_down(double start, double step);
// np.round (half to even).
double round_even(double x);

// The timesteps of the "linspace", "leading" and "trailing" spacings over T train timesteps
// for N steps, descending, as the Euler-family classes compute them (float32 values).
std::vector<double> k_timesteps(const std::string& spacing, int64_t T, int64_t N, int64_t steps_offset,
                                const ClassFields& f);
// sqrt((1 - a) / a) of the fp32 alphas_cumprod, as fp32 values in double.
std::vector<double> train_sigmas(const at::Tensor& alphas_cumprod);
// np.interp(x, arange(len(fp)), fp).
std::vector<double> interp(const std::vector<double>& x, const std::vector<double>& fp);
// Karras et al.'s sigmas (rho 7) from in_sigmas' last to its first value.
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t n);
// The fractional timestep of each sigma on the log-sigma table (diffusers' _sigma_to_t).
std::vector<double> sigma_to_t(const std::vector<double>& sigmas, const std::vector<double>& train_sigmas);
// A 1-D fp32 tensor of the values.
at::Tensor fp32_tensor(const std::vector<double>& values);

std::unique_ptr<Scheduler> make_euler(const SchedulerConfig& c, int64_t steps);
std::unique_ptr<Scheduler> make_euler_ancestral(const SchedulerConfig& c, int64_t steps);
std::unique_ptr<Scheduler> make_heun(const SchedulerConfig& c, int64_t steps);
std::unique_ptr<Scheduler> make_dpm_solver(const SchedulerConfig& c, int64_t steps, bool karras);
std::unique_ptr<Scheduler> make_ddim(const SchedulerConfig& c, int64_t steps);
std::unique_ptr<Scheduler> make_pndm(const SchedulerConfig& c, int64_t steps);

}  // namespace xltune::scheduler_detail
