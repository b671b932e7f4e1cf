#include "train/pivotal_tuning.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/check.h"

namespace xltune {

PivotalTuning::PivotalTuning(at::Tensor rows_1, at::Tensor rows_2, double std_old_1, double std_old_2,
                             int64_t pivot_step)
    : rows_1_(std::move(rows_1)), rows_2_(std::move(rows_2)), std_old_1_(std_old_1), std_old_2_(std_old_2),
      pivot_step_(pivot_step) {
  XLTUNE_CHECK(rows_1_.defined() && rows_2_.defined(), "pivotal tuning: both encoders need new rows");
  XLTUNE_CHECK(pivot_step >= 0, "pivotal tuning: negative pivot step ", pivot_step);
}

void PivotalTuning::after_optimizer_step(const at::Tensor& apply) {
  at::NoGradGuard no_grad;
  for (int i = 0; i < 2; ++i) {
    const at::Tensor& rows = i == 0 ? rows_1_ : rows_2_;
    // As the reference: off_ratio = std_old / rows.std(); rows *= off_ratio ** 0.1, with the
    // ratio a 0-dim tensor (fp32) raised on the device.
    at::Tensor ratio = at::full({}, std_old(i), rows.options()) / rows.std();
    at::Tensor factor = ratio.pow(0.1);
    if (apply.defined()) factor = at::where(apply.to(at::kBool), factor, at::ones_like(factor));
    rows.mul_(factor);
  }
}

void TextConditioningCache::put(int64_t key, at::Tensor context, at::Tensor pooled) {
  entries_[key] = {std::move(context), std::move(pooled)};
}

}  // namespace xltune
