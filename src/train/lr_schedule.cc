#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace xltune {

const std::vector<std::string>& lr_schedule_names() {
  static const std::vector<std::string> names{"constant", "constant_with_warmup", "linear", "cosine"};
  return names;
}

LrScheduleKind parse_lr_schedule(const std::string& name) {
  const auto& names = lr_schedule_names();
  for (size_t i = 0; i < names.size(); ++i)
    if (name == names[i]) return static_cast<LrScheduleKind>(i);
  XLTUNE_FAIL("--lr_scheduler '", name, "': expected constant, constant_with_warmup, linear or cosine");
}

std::string lr_schedule_name(LrScheduleKind kind) { return lr_schedule_names().at(static_cast<size_t>(kind)); }

double LrSchedule::factor(int64_t s) const {
  if (kind == LrScheduleKind::kConstant) return 1.0;
  // diffusers: float(current_step) / float(max(1, num_warmup_steps)) while current_step < warmup.
  if (s < warmup_steps) return static_cast<double>(s) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  switch (kind) {
    case LrScheduleKind::kConstantWithWarmup: return 1.0;
    case LrScheduleKind::kLinear:
      return std::max(0.0, static_cast<double>(total_steps - s) /
                               static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps)));
    case LrScheduleKind::kCosine: {
      // num_cycles = 0.5: half a cosine from 1 down to 0.
      const double progress =
          static_cast<double>(s - warmup_steps) / static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
      return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * 0.5 * 2.0 * progress)));
    }
    default: return 1.0;
  }
}

}  // namespace xltune
