// A number the host knows for a step only up to the verdict of the step before, which is still on
// the device (Note [Reading a step one step late], train/trainer.h): the learning-rate factor and
// the EMA's decay follow the count of accepted steps, the spike threshold the accepted norms.
// Both candidates are host numbers; the device picks one with the step before's verdict, so the
// step is queued without a read and computes what it would have with the verdict read first.
#pragma once

#include <ATen/core/Tensor.h>

namespace xltune {

struct EitherWay {
  double if_skipped = 0;  // the value if the step before is skipped (or when there is no choice)
  double if_taken = 0;    // ... if it is taken
  // The step before's verdict: a float32 0-dim tensor on the training device, 1 (taken) or 0;
  // undefined when the value is known (no step in flight, or the same either way).
  at::Tensor before_taken;

  static EitherWay known(double value) { return {value, value, {}}; }
  // Both candidates, with the choice left to `taken` only where they differ.
  static EitherWay either(double if_skipped, double if_taken, const at::Tensor& taken);
  bool is_known() const { return !before_taken.defined(); }
  // The value (is_known() only; throws otherwise).
  double value() const;
  // The one the host takes once it has read the verdict.
  double chosen(bool taken) const { return taken ? if_taken : if_skipped; }
  // Writes the value into `into` (a 0-dim tensor on the verdict's device) with no host read: a
  // fill, then where the verdict is 1 a masked fill, each the candidate converted to its dtype
  // exactly as a fill with a known value would.
  void write_into(const at::Tensor& into) const;
};

}  // namespace xltune
