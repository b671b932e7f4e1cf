#include "core/config_reader.h"

#include "core/check.h"

namespace xltune {

ConfigReader::ConfigReader(const std::string& text, const std::string& source) : source_(source) {
  try {
    json_ = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    XLTUNE_FAIL(source, ": not valid JSON: ", e.what());
  }
  XLTUNE_CHECK(json_.is_object(), source, ": expected a JSON object");
}

int64_t ConfigReader::integer(const char* key, int64_t fallback) const {
  if (!has(key)) return fallback;
  XLTUNE_CHECK(json_[key].is_number_integer(), source_, ": \"", key, "\": expected an integer, got ", json_[key].dump());
  return json_[key].get<int64_t>();
}

int64_t ConfigReader::required_integer(const char* key) const {
  XLTUNE_CHECK(has(key), source_, ": missing \"", key, "\"");
  return integer(key, 0);
}

double ConfigReader::number(const char* key, double fallback) const {
  if (!has(key)) return fallback;
  XLTUNE_CHECK(json_[key].is_number(), source_, ": \"", key, "\": expected a number, got ", json_[key].dump());
  return json_[key].get<double>();
}

bool ConfigReader::boolean(const char* key, bool fallback) const {
  if (!has(key)) return fallback;
  XLTUNE_CHECK(json_[key].is_boolean(), source_, ": \"", key, "\": expected true or false, got ", json_[key].dump());
  return json_[key].get<bool>();
}

std::string ConfigReader::string(const char* key, const std::string& fallback) const {
  if (!has(key)) return fallback;
  XLTUNE_CHECK(json_[key].is_string(), source_, ": \"", key, "\": expected a string, got ", json_[key].dump());
  return json_[key].get<std::string>();
}

std::vector<std::string> ConfigReader::strings(const char* key) const {
  XLTUNE_CHECK(has(key) && json_[key].is_array() && !json_[key].empty(), source_, ": \"", key,
               "\": expected a non-empty list of names");
  std::vector<std::string> out;
  for (const auto& v : json_[key]) {
    XLTUNE_CHECK(v.is_string(), source_, ": \"", key, "\": expected names, got ", v.dump());
    out.push_back(v.get<std::string>());
  }
  return out;
}

std::vector<int64_t> ConfigReader::positive_integers(const char* key, const std::vector<int64_t>& fallback) const {
  if (!has(key)) {
    XLTUNE_CHECK(!fallback.empty(), source_, ": missing \"", key, "\"");
    return fallback;
  }
  const auto& v = json_[key];
  XLTUNE_CHECK(v.is_array() && !v.empty(), source_, ": \"", key, "\": expected a list of positive integers, got ", v.dump());
  std::vector<int64_t> out;
  for (const auto& x : v) {
    XLTUNE_CHECK(x.is_number_integer() && x.get<int64_t>() > 0, source_, ": \"", key,
                 "\": expected positive integers, got ", v.dump());
    out.push_back(x.get<int64_t>());
  }
  return out;
}

std::vector<int64_t> ConfigReader::per_block(const char* key, size_t count, int64_t fallback) const {
  if (!has(key)) return std::vector<int64_t>(count, fallback);
  const auto& v = json_[key];
  if (v.is_number_integer()) return std::vector<int64_t>(count, v.get<int64_t>());
  XLTUNE_CHECK(v.is_array() && v.size() == count, source_, ": \"", key, "\": expected an integer or a list of ",
               count, " integers (one per block), got ", v.dump());
  std::vector<int64_t> out;
  for (const auto& x : v) {
    XLTUNE_CHECK(x.is_number_integer() && x.get<int64_t>() > 0, source_, ": \"", key,
                 "\": expected positive integers, got ", v.dump(), " (nested per-layer lists are not supported)");
    out.push_back(x.get<int64_t>());
  }
  return out;
}

void ConfigReader::require_default(const char* key, const nlohmann::json& expected, const char* why) const {
  if (!has(key)) return;
  XLTUNE_CHECK(json_[key] == expected, source_, ": \"", key, "\" is ", json_[key].dump(), "; xltune supports only ",
               expected.dump(), " (", why, ")");
}

}  // namespace xltune
