// libFuzzer target for the safetensors header parser (tests/fuzz/run builds and runs it).
// Input: the bytes after the 8-byte length; the data size is taken from the first byte so
// that the offset checks are exercised with sizes that do and do not match.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "core/safetensors_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  uint64_t data_size = static_cast<uint64_t>(data[0]) * 4;
  std::string_view json(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    xltune::parse_safetensors_header(json, data_size, "fuzz");
  } catch (const xltune::Error&) {
    // Rejecting input with an Error is the correct outcome; anything else is a finding.
  }
  // Every well-formed header must also survive format -> parse.
  try {
    auto header = xltune::parse_safetensors_header(json, data_size, "fuzz");
    std::string again = xltune::format_safetensors_header(header.tensors, header.metadata);
    xltune::parse_safetensors_header(again, data_size, "fuzz-reformatted");
  } catch (const xltune::Error&) {
  }
  return 0;
}
