// Comparisons shared by the parity tests.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace xltune::testing_util {

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// |a - b| / max(1, max|b|): absolute where values are O(1), relative where sums grow large
// (gradients summed over many positions reach hundreds, where one fp32 ulp is 3e-5).
inline double scaled_diff(const at::Tensor& a, const at::Tensor& b) {
  return max_abs_diff(a, b) / std::max(1.0, b.abs().max().item<double>());
}

}  // namespace xltune::testing_util
