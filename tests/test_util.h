// Comparisons shared by the parity tests, a temporary folder, and EXPECT_CONTAINS.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <string>

// A failed check shows the whole text, not only that the part is missing from it.
#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << "in: " << (text)

// A comparison across implementations or CPU kernels: the measured error is printed as
// "measured WHAT: VALUE (tolerance TOL)" and checked. tests/tolerances runs the suite on every
// CPU kernel path ATen has and lists each WHAT's worst value against its tolerance; the
// tolerance beside each use is a few times that worst, with the figures in a comment.
#define EXPECT_MEASURED_BELOW(what, value, tolerance)                                                  \
  do {                                                                                              \
    const double xltune_measured_ = (value);                                                        \
    std::cout << "measured " << (what) << ": " << xltune_measured_ << " (tolerance " << (tolerance) \
              << ")\n";                                                                             \
    EXPECT_LT(xltune_measured_, (tolerance)) << (what);                                             \
  } while (0)

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

// max|a - b| / max|b|: the error relative to the reference's largest value.
inline double relative_diff(const at::Tensor& a, const at::Tensor& b) {
  return max_abs_diff(a, b) / b.abs().max().item<double>();
}

// `t` rounded to bf16 and widened back: what a bf16 collective or state keeps of fp32 values.
inline at::Tensor to_bf16_and_back(const at::Tensor& t) { return t.to(at::kBFloat16).to(at::kFloat); }

// A fresh folder under $TMPDIR (or /tmp), removed with everything in it when the test ends.
class ScopedTempDir {
 public:
  explicit ScopedTempDir(const std::string& name = "xltune_test") {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/" + name + "_XXXXXX";
    char* made = ::mkdtemp(pattern.data());
    EXPECT_NE(made, nullptr) << "mkdtemp " << pattern;
    path_ = pattern;
  }
  ~ScopedTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace xltune::testing_util
