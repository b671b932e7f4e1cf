#include "train/either_way.h"

#include <ATen/ATen.h>

#include "core/check.h"

namespace xltune {

EitherWay EitherWay::either(double if_skipped, double if_taken, const at::Tensor& taken) {
  if (if_skipped == if_taken || !taken.defined()) return known(if_skipped);
  return {if_skipped, if_taken, taken};
}

double EitherWay::value() const {
  XLTUNE_CHECK(is_known(), "trainer: a value read on the host that depends on the step in flight");
  return if_skipped;
}

void EitherWay::write_into(const at::Tensor& into) const {
  at::NoGradGuard no_grad;
  into.fill_(if_skipped);
  if (!is_known()) into.masked_fill_(before_taken.ne(0), if_taken);
}

}  // namespace xltune
