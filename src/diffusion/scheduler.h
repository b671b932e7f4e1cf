// The samplers of generation ("schedulers" in diffusers), under the reference's names
// (predict.py's SCHEDULERS), each built from the model's own scheduler/scheduler_config.json as
// diffusers' `Class.from_config(pipe.scheduler.config)` builds it:
//
//   K_EULER             EulerDiscreteScheduler            order 1
//   K_EULER_ANCESTRAL   EulerAncestralDiscreteScheduler   order 1, draws noise every step
//   HeunDiscrete        HeunDiscreteScheduler             order 2: 2N-1 model calls
//   DDIM                DDIMScheduler (eta 0)             order 1
//   DPMSolverMultistep  DPMSolverMultistepScheduler       dpmsolver++, 2nd order multistep
//   KarrasDPM           the same with use_karras_sigmas   (the reference's override)
//   PNDM                PNDMScheduler (PLMS only: SDXL's config skips the PRK steps)
//
// Note [Schedulers as diffusers computes them]
// Every schedule (timesteps, sigmas, alphas) is computed in the precision and order diffusers
// uses: sigmas from the fp32 alphas_cumprod, interpolated in double (numpy) and stored fp32; the
// per-step arithmetic on 0-dim fp32 tensors, so the same ATen kernels run. A field of the config
// that a class does not take is ignored, one it does not say takes the class's default (as
// from_config does), and a value xltune does not implement (thresholding, exponential sigmas,
// SDE solvers, ...) is an error naming the field, never silently another sampler.
//
// The caller runs the steps in order from `begin` (0, or img2img's t_start * order()) and passes
// each step's index into timesteps(); stateful samplers (Heun, DPM-Solver, PNDM) keep their
// history between calls, so one Scheduler serves one generation.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "diffusion/noise_schedule.h"

namespace xltune {

// A scheduler_config.json, read once: the noise schedule and the raw fields for the classes.
struct SchedulerConfig {
  NoiseScheduleConfig noise;
  nlohmann::json fields;
  std::string source;  // the file, for errors
  static SchedulerConfig from_json_text(const std::string& text, const std::string& source);
};

// The reference's names, in its order.
const std::vector<std::string>& scheduler_names();

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // What the UNet is called with, one entry per model call (fp32, CPU).
  const at::Tensor& timesteps() const { return timesteps_; }
  int64_t num_inference_steps() const { return num_inference_steps_; }
  // Model calls per inference step (2 for Heun): img2img starts at t_start * order().
  virtual int order() const { return 1; }
  // The std of the initial noise (0-dim fp32).
  virtual at::Tensor init_noise_sigma() const;
  // The UNet's input at step `index`.
  virtual at::Tensor scale_model_input(const at::Tensor& sample, int64_t index) const;
  // The sample after step `index`, from the (guided) model output. Ancestral sampling draws its
  // noise from `generator` (a CPU generator, as diffusers' randn_tensor with one).
  virtual at::Tensor step(const at::Tensor& model_output, int64_t index, const at::Tensor& sample,
                          at::Generator& generator) = 0;
  // x0 noised to the level of step `index` (img2img's start, inpainting's known region).
  virtual at::Tensor add_noise(const at::Tensor& x0, const at::Tensor& noise, int64_t index) const = 0;
  // The sample holds only `rows` (int64, CPU) of a batch of `full_batch`: a step's noise is drawn
  // for the whole batch and these rows kept, so that they equal the same rows of a run of all
  // of them (generation split over ranks).
  void keep_rows_of(int64_t full_batch, at::Tensor rows) {
    full_batch_ = full_batch;
    rows_ = std::move(rows);
  }

 protected:
  // randn of a step's noise for `like`'s shape, on the CPU generator (see keep_rows_of).
  at::Tensor step_noise(const at::Tensor& like, at::Generator& generator) const;
  int64_t full_batch_ = 0;
  at::Tensor rows_;
  explicit Scheduler(const SchedulerConfig& c) : schedule_(c.noise) {}
  NoiseSchedule schedule_;
  at::Tensor timesteps_;
  int64_t num_inference_steps_ = 0;
};

// The scheduler `name` (one of scheduler_names()) for `steps` inference steps. Throws Error
// naming the option or the config field that is wrong.
std::unique_ptr<Scheduler> make_scheduler(const std::string& name, const SchedulerConfig& config, int64_t steps);

}  // namespace xltune
