#include "core/dtype.h"

#include <c10/core/ScalarType.h>

#include "core/check.h"

namespace xltune {

namespace {
struct Pair {
  StDtype st;
  c10::ScalarType torch;
};
constexpr Pair kPairs[] = {
    {StDtype::kBool, c10::kBool},
    {StDtype::kU8, c10::kByte},
    {StDtype::kI8, c10::kChar},
    {StDtype::kI16, c10::kShort},
    {StDtype::kU16, c10::kUInt16},
    {StDtype::kF16, c10::kHalf},
    {StDtype::kBF16, c10::kBFloat16},
    {StDtype::kI32, c10::kInt},
    {StDtype::kU32, c10::kUInt32},
    {StDtype::kF32, c10::kFloat},
    {StDtype::kF64, c10::kDouble},
    {StDtype::kI64, c10::kLong},
    {StDtype::kU64, c10::kUInt64},
    {StDtype::kC64, c10::kComplexFloat},
    {StDtype::kF8_E5M2, c10::kFloat8_e5m2},
    {StDtype::kF8_E4M3, c10::kFloat8_e4m3fn},
    {StDtype::kF8_E8M0, c10::kFloat8_e8m0fnu},
    {StDtype::kF8_E4M3FNUZ, c10::kFloat8_e4m3fnuz},
    {StDtype::kF8_E5M2FNUZ, c10::kFloat8_e5m2fnuz},
};
}  // namespace

c10::ScalarType to_scalar_type(StDtype dtype) {
  for (const auto& p : kPairs)
    if (p.st == dtype) return p.torch;
  XLTUNE_FAIL("dtype ", dtype_name(dtype), " has no libtorch equivalent");
}

StDtype from_scalar_type(c10::ScalarType type) {
  for (const auto& p : kPairs)
    if (p.torch == type) return p.st;
  XLTUNE_FAIL("tensors of type ", c10::toString(type), " cannot be stored in safetensors");
}

std::string scalar_type_name(c10::ScalarType type) { return c10::toString(type); }

}  // namespace xltune
