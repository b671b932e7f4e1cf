// The safetensors header: parsing and validation, with no libtorch in sight, so that the
// fuzzer (tests/fuzz) builds it alone. Format: reference/sdxl.md §5 and the safetensors README.
//
//   [u64 little-endian N][N bytes of UTF-8 JSON, space-padded][data buffer]
//   {"__metadata__": {"k": "v"}, "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...}
//
// Validation is strict, as in the reference implementation and then some: offsets sorted by
// begin must start at 0, chain without holes or overlaps and end exactly at the end of the
// buffer; each tensor's byte count must equal numel × element size; names are unique; the
// header is at most kMaxHeaderBytes and valid UTF-8 JSON. Every failure is an xltune::Error
// whose message starts with the source (the file path) and names the tensor concerned.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace xltune {

// Every dtype the safetensors format defines, in the order of the reference implementation's
// enum (which orders tensors in the files it writes: see save_safetensors). The sub-byte ones
// (F4, F6_*) are recognised so that the message can say they are unsupported, not unknown.
enum class StDtype {
  kBool, kF4, kF6_E2M3, kF6_E3M2, kU8, kI8, kF8_E5M2, kF8_E4M3, kF8_E8M0, kF8_E4M3FNUZ, kF8_E5M2FNUZ,
  kI16, kU16, kF16, kBF16, kI32, kU32, kF32, kC64, kF64, kI64, kU64,
};

const char* dtype_name(StDtype dtype);
// Bytes per element; 0 for the sub-byte dtypes.
size_t dtype_size(StDtype dtype);
// False for unknown names.
bool parse_dtype_name(std::string_view name, StDtype* out);

struct SafetensorsEntry {
  std::string name;
  StDtype dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // relative to the start of the data buffer
  uint64_t end = 0;
  uint64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> tensors;  // sorted by begin (file order)
  std::map<std::string, std::string> metadata;
};

constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// Parses the JSON header; `data_size` is the size of the data buffer that follows it.
SafetensorsHeader parse_safetensors_header(std::string_view json, uint64_t data_size,
                                           const std::string& source);

// Validates the 8-byte prefix of a file of `file_size` bytes; returns the header length N.
uint64_t parse_safetensors_prefix(const unsigned char* prefix8, uint64_t file_size,
                                  const std::string& source);

// The JSON header that save_safetensors writes, space-padded to a multiple of 8 bytes:
// "__metadata__" first, then the tensors in the order given.
std::string format_safetensors_header(const std::vector<SafetensorsEntry>& tensors,
                                      const std::map<std::string, std::string>& metadata);

}  // namespace xltune
