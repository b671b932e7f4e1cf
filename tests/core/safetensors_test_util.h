// Helpers shared by the safetensors tests: the byte pattern that tests/reference/
// safetensors_interop.py computes too. Temporary folders: ScopedTempDir in test_util.h.
#pragma once

#include <ATen/ATen.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace xltune::testing_util {

// byte k = (k*131 + seed*17 + 7) mod 256 (BOOL: mod 2), as in safetensors_interop.py.
inline at::Tensor pattern_tensor(StDtype dtype, const std::vector<int64_t>& shape, int seed) {
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(to_scalar_type(dtype)));
  auto* bytes = static_cast<unsigned char*>(t.data_ptr());
  for (size_t k = 0; k < t.nbytes(); ++k) {
    unsigned v = (k * 131 + seed * 17 + 7) & 0xff;
    bytes[k] = static_cast<unsigned char>(dtype == StDtype::kBool ? (v & 1) : v);
  }
  return t;
}

inline bool same_bytes(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  at::Tensor ca = a.contiguous(), cb = b.contiguous();
  return ca.nbytes() == cb.nbytes() && (ca.nbytes() == 0 || std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) == 0);
}

}  // namespace xltune::testing_util
