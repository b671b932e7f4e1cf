// Learning-rate schedules named and shaped exactly as diffusers' get_scheduler builds them
// (optimization.py), as a factor of each optimizer group's base learning rate:
//   constant              1
//   constant_with_warmup  s / warmup while s < warmup, then 1
//   linear                s / warmup while s < warmup, then (total - s) / (total - warmup), >= 0
//   cosine                s / warmup while s < warmup, then 0.5 (1 + cos(pi * progress)), >= 0
// where s counts scheduler steps taken. The training loop steps as diffusers' scripts do
// (optimizer step, then scheduler step), so training step k (from 1) uses factor(k - 1): with
// warmup, the first step's learning rate is 0. `constant` has no warmup (diffusers'
// get_scheduler ignores num_warmup_steps for it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace xltune {

enum class LrScheduleKind { kConstant, kConstantWithWarmup, kLinear, kCosine };

// Throws Error naming the value and the accepted names.
LrScheduleKind parse_lr_schedule(const std::string& name);
std::string lr_schedule_name(LrScheduleKind kind);
const std::vector<std::string>& lr_schedule_names();

struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::kConstant;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  // The factor after `scheduler_steps` scheduler steps.
  double factor(int64_t scheduler_steps) const;
  // The factor used by training step `step` (1-based): factor(step - 1).
  double factor_for_step(int64_t step) const { return factor(step - 1); }
};

}  // namespace xltune
