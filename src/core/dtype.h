// Safetensors dtype names <-> libtorch scalar types.
#pragma once

#include <string>

#include "core/safetensors_header.h"

namespace c10 {
enum class ScalarType : int8_t;
}

namespace xltune {

// The libtorch type that holds `dtype` bit for bit; throws for the sub-byte dtypes.
c10::ScalarType to_scalar_type(StDtype dtype);
// The safetensors dtype for a libtorch type; throws naming the type if the format has none.
StDtype from_scalar_type(c10::ScalarType type);
std::string scalar_type_name(c10::ScalarType type);

}  // namespace xltune
