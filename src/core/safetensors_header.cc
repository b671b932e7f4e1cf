#include "core/safetensors_header.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "core/check.h"

namespace xltune {

namespace {

struct DtypeInfo {
  StDtype dtype;
  const char* name;
  size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {StDtype::kBool, "BOOL", 1},       {StDtype::kU8, "U8", 1},
    {StDtype::kI8, "I8", 1},           {StDtype::kI16, "I16", 2},
    {StDtype::kU16, "U16", 2},         {StDtype::kF16, "F16", 2},
    {StDtype::kBF16, "BF16", 2},       {StDtype::kI32, "I32", 4},
    {StDtype::kU32, "U32", 4},         {StDtype::kF32, "F32", 4},
    {StDtype::kF64, "F64", 8},         {StDtype::kI64, "I64", 8},
    {StDtype::kU64, "U64", 8},         {StDtype::kC64, "C64", 8},
    {StDtype::kF8_E5M2, "F8_E5M2", 1}, {StDtype::kF8_E4M3, "F8_E4M3", 1},
    {StDtype::kF8_E8M0, "F8_E8M0", 1}, {StDtype::kF8_E4M3FNUZ, "F8_E4M3FNUZ", 1},
    {StDtype::kF8_E5M2FNUZ, "F8_E5M2FNUZ", 1},
    {StDtype::kF4, "F4", 0},           {StDtype::kF6_E2M3, "F6_E2M3", 0},
    {StDtype::kF6_E3M2, "F6_E3M2", 0},
};

const DtypeInfo& info(StDtype dtype) {
  for (const auto& d : kDtypes)
    if (d.dtype == dtype) return d;
  XLTUNE_FAIL("internal: dtype ", static_cast<int>(dtype), " has no table entry");
}

using json = nlohmann::json;

// A value shown in a message: short, one line.
std::string brief(const json& value) {
  std::string text = value.dump(-1, ' ', true, json::error_handler_t::replace);
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

uint64_t read_u64(const json& value, const std::string& source, const std::string& what) {
  XLTUNE_CHECK(value.is_number_unsigned(), source, ": ", what,
               ": expected a non-negative integer, got ", brief(value));
  return value.get<uint64_t>();
}

SafetensorsEntry parse_entry(const std::string& name, const json& value, const std::string& source) {
  const std::string where = source + ": tensor '" + name + "'";
  XLTUNE_CHECK(value.is_object(), where, ": expected an object with dtype, shape and data_offsets, got ",
               brief(value));
  SafetensorsEntry entry;
  entry.name = name;
  for (const char* key : {"dtype", "shape", "data_offsets"})
    XLTUNE_CHECK(value.contains(key), where, ": missing \"", key, "\"");

  const json& dtype = value["dtype"];
  XLTUNE_CHECK(dtype.is_string(), where, ": dtype: expected a string, got ", brief(dtype));
  const auto& dtype_text = dtype.get_ref<const std::string&>();
  XLTUNE_CHECK(parse_dtype_name(dtype_text, &entry.dtype), where, ": unknown dtype '", dtype_text, "'");
  XLTUNE_CHECK(dtype_size(entry.dtype) > 0, where, ": dtype ", dtype_text,
               " packs several values per byte and is not supported");

  const json& shape = value["shape"];
  XLTUNE_CHECK(shape.is_array(), where, ": shape: expected an array, got ", brief(shape));
  XLTUNE_CHECK(shape.size() <= 64, where, ": shape has ", shape.size(), " dimensions (at most 64)");
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& dim : shape) {
    uint64_t d = read_u64(dim, where, "shape");
    XLTUNE_CHECK(d <= static_cast<uint64_t>(INT64_MAX), where, ": shape dimension ", d, " is too large");
    entry.shape.push_back(static_cast<int64_t>(d));
    overflow |= __builtin_mul_overflow(numel, d, &numel);
  }
  const json& offsets = value["data_offsets"];
  XLTUNE_CHECK(offsets.is_array() && offsets.size() == 2, where,
               ": data_offsets: expected [begin, end], got ", brief(offsets));
  entry.begin = read_u64(offsets[0], where, "data_offsets[0]");
  entry.end = read_u64(offsets[1], where, "data_offsets[1]");
  XLTUNE_CHECK(entry.begin <= entry.end, where, ": data_offsets [", entry.begin, ", ", entry.end,
               "] end before they begin");
  uint64_t expected = 0;
  overflow |= __builtin_mul_overflow(numel, dtype_size(entry.dtype), &expected);
  XLTUNE_CHECK(!overflow, where, ": shape ", brief(shape), " overflows 64 bits");
  XLTUNE_CHECK(entry.end - entry.begin == expected, where, ": data_offsets [", entry.begin, ", ",
               entry.end, "] hold ", entry.end - entry.begin, " bytes, but ", dtype_text, " ",
               brief(shape), " needs ", expected);
  return entry;
}

// The deepest nesting of [ and { outside strings. A valid header nests 3 deep; nlohmann's DOM
// recurses once per level, so a hostile header of 100,000 '[' would overflow the stack.
size_t nesting_depth(std::string_view text) {
  size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

constexpr size_t kMaxNesting = 8;

}  // namespace

const char* dtype_name(StDtype dtype) { return info(dtype).name; }
size_t dtype_size(StDtype dtype) { return info(dtype).size; }

bool parse_dtype_name(std::string_view name, StDtype* out) {
  for (const auto& d : kDtypes) {
    if (name == d.name) {
      *out = d.dtype;
      return true;
    }
  }
  return false;
}

uint64_t SafetensorsEntry::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

uint64_t parse_safetensors_prefix(const unsigned char* prefix8, uint64_t file_size, const std::string& source) {
  XLTUNE_CHECK(file_size >= 8, source, ": not a safetensors file: ", file_size,
               " bytes, too short for the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | prefix8[i];  // little-endian on every host
  XLTUNE_CHECK(n <= kMaxHeaderBytes, source, ": header length ", n, " exceeds the limit of ",
               kMaxHeaderBytes, " bytes (corrupt or not a safetensors file)");
  XLTUNE_CHECK(n >= 2, source, ": header length ", n, " is too small for a JSON object");
  XLTUNE_CHECK(n <= file_size - 8, source, ": header length ", n, " runs past the end of the file (",
               file_size, " bytes): truncated or not a safetensors file");
  return n;
}

SafetensorsHeader parse_safetensors_header(std::string_view text, uint64_t data_size, const std::string& source) {
  XLTUNE_CHECK(!text.empty() && text[0] == '{', source, ": header does not start with '{' (not a safetensors file)");

  const size_t nesting = nesting_depth(text);
  XLTUNE_CHECK(nesting <= kMaxNesting, source, ": header nests ", nesting, " levels deep (a valid one nests 3; at most ",
               kMaxNesting, " accepted)");

  // nlohmann keeps the last of duplicate keys silently; a callback sees every key, so
  // duplicates at the top level (tensor names) are caught here.
  std::set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && duplicate.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second) duplicate = key;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text.begin(), text.end(), on_event, /*allow_exceptions=*/true);
  } catch (const json::exception& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 7: ..."
    std::string why = e.what();
    auto pos = why.find("] ");
    if (pos != std::string::npos) why = why.substr(pos + 2);
    XLTUNE_FAIL(source, ": header is not valid JSON: ", why);
  }
  XLTUNE_CHECK(duplicate.empty(), source, ": tensor name '", duplicate, "' appears twice in the header");
  XLTUNE_CHECK(header.is_object(), source, ": header: expected a JSON object, got ", brief(header));

  SafetensorsHeader out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      XLTUNE_CHECK(it->is_object(), source, ": __metadata__: expected an object of strings, got ", brief(*it));
      for (auto m = it->begin(); m != it->end(); ++m) {
        XLTUNE_CHECK(m->is_string(), source, ": __metadata__ '", m.key(), "': expected a string, got ", brief(*m));
        out.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    out.tensors.push_back(parse_entry(it.key(), *it, source));
  }

  // Sorted by (begin, end) the tensors must tile [0, data_size) exactly. Empty tensors sort
  // before a non-empty one at the same offset, so they never look like an overlap.
  std::sort(out.tensors.begin(), out.tensors.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const auto& t : out.tensors) {
    if (t.begin != cursor) {
      if (t.begin < cursor) {
        XLTUNE_FAIL(source, ": tensor '", t.name, "' at bytes [", t.begin, ", ", t.end, ") overlaps tensor '",
                    previous->name, "' at [", previous->begin, ", ", previous->end, ")");
      }
      XLTUNE_FAIL(source, ": hole in the data buffer: bytes [", cursor, ", ", t.begin,
                  ") belong to no tensor (before tensor '", t.name, "')");
    }
    cursor = t.end;
    previous = &t;
  }
  if (cursor != data_size) {
    if (cursor > data_size) {
      XLTUNE_FAIL(source, ": tensor '", previous->name, "' ends at byte ", cursor, " but the data buffer has ",
                  data_size, " bytes (truncated file?)");
    }
    XLTUNE_FAIL(source, ": the tensors cover ", cursor, " bytes but the data buffer has ", data_size,
                " (trailing bytes belong to no tensor)");
  }
  return out;
}

std::string format_safetensors_header(const std::vector<SafetensorsEntry>& tensors,
                                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::set<std::string> names;
  for (const auto& t : tensors) {
    XLTUNE_CHECK(t.name != "__metadata__", "tensor name '__metadata__' is reserved by the safetensors format");
    XLTUNE_CHECK(names.insert(t.name).second, "tensor name '", t.name, "' given twice");
    nlohmann::ordered_json entry;
    entry["dtype"] = dtype_name(t.dtype);
    entry["shape"] = t.shape;
    entry["data_offsets"] = {t.begin, t.end};
    header[t.name] = std::move(entry);
  }
  // strict error handler: a tensor name that is not valid UTF-8 is refused.
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    XLTUNE_FAIL("safetensors header: tensor or metadata names must be valid UTF-8 (", e.what(), ")");
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace xltune
