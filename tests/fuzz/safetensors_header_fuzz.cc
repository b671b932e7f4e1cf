// libFuzzer target for the safetensors header parser (tests/fuzz/run builds and runs it).
// Input: the bytes after the 8-byte length; the data size is taken from the first byte so
// that the offset checks are exercised with sizes that do and do not match.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

#include "core/error.h"
#include "core/safetensors_header.h"

namespace {

// A finding: libFuzzer reports the abort and keeps the input that caused it.
[[noreturn]] void finding(const std::string& what, std::string_view json, const std::string& again) {
  std::fprintf(stderr, "safetensors header round trip: %s\n  header:      %.*s\n  reformatted: %s\n", what.c_str(),
               static_cast<int>(json.size()), json.data(), again.c_str());
  std::abort();
}

// "" when equal, else what differs. By name, not by position: the parser orders empty tensors
// that share an offset as std::sort leaves them.
std::string difference(const xltune::SafetensorsHeader& a, const xltune::SafetensorsHeader& b) {
  if (a.metadata != b.metadata) return "metadata differs";
  if (a.tensors.size() != b.tensors.size()) {
    return std::to_string(a.tensors.size()) + " tensors became " + std::to_string(b.tensors.size());
  }
  std::map<std::string, const xltune::SafetensorsEntry*> by_name;
  for (const auto& t : b.tensors) by_name[t.name] = &t;
  for (const auto& t : a.tensors) {
    auto it = by_name.find(t.name);
    if (it == by_name.end()) return "tensor '" + t.name + "' is missing";
    const xltune::SafetensorsEntry& u = *it->second;
    if (t.dtype != u.dtype) return "tensor '" + t.name + "': dtype differs";
    if (t.shape != u.shape) return "tensor '" + t.name + "': shape differs";
    if (t.begin != u.begin || t.end != u.end) return "tensor '" + t.name + "': data_offsets differ";
  }
  return "";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  uint64_t data_size = static_cast<uint64_t>(data[0]) * 4;
  std::string_view json(reinterpret_cast<const char*>(data + 1), size - 1);
  xltune::SafetensorsHeader header;
  try {
    header = xltune::parse_safetensors_header(json, data_size, "fuzz");
  } catch (const xltune::Error&) {
    // Rejecting input with an Error is the correct outcome; anything else is a finding.
    return 0;
  }
  // Every header that parses must survive format -> parse unchanged: a file xltune reads, it
  // can write back. An Error here is a finding, not a rejection.
  std::string again;
  xltune::SafetensorsHeader reparsed;
  try {
    again = xltune::format_safetensors_header(header.tensors, header.metadata);
  } catch (const xltune::Error& e) {
    finding(std::string("format failed: ") + e.what(), json, again);
  }
  try {
    reparsed = xltune::parse_safetensors_header(again, data_size, "fuzz-reformatted");
  } catch (const xltune::Error& e) {
    finding(std::string("the reformatted header does not parse: ") + e.what(), json, again);
  }
  const std::string differs = difference(header, reparsed);
  if (!differs.empty()) finding("the reformatted header parses differently: " + differs, json, again);
  return 0;
}
