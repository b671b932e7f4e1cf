#include "prep/hub_config.h"

#include <filesystem>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/safetensors.h"
#include "core/state_dict.h"

namespace fs = std::filesystem;

namespace xltune {

nlohmann::json parse_config_object(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    XLTUNE_FAIL(source, ": not valid JSON (", e.what(), ")");
  }
  XLTUNE_CHECK(j.is_object(), source, ": expected a JSON object");
  return j;
}

int64_t config_int(const nlohmann::json& j, const char* key, int64_t fallback, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  XLTUNE_CHECK(j[key].is_number_integer(), source, ": \"", key, "\": expected an integer");
  return j[key].get<int64_t>();
}

double config_number(const nlohmann::json& j, const char* key, double fallback, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  XLTUNE_CHECK(j[key].is_number(), source, ": \"", key, "\": expected a number");
  return j[key].get<double>();
}

bool config_bool(const nlohmann::json& j, const char* key, bool fallback, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  XLTUNE_CHECK(j[key].is_boolean(), source, ": \"", key, "\": expected true or false");
  return j[key].get<bool>();
}

std::string hub_model_weights(const std::string& dir, const std::string& option, const std::string& hub_name) {
  XLTUNE_CHECK(fs::is_directory(dir), option, " ", dir, ": no such folder");
  XLTUNE_CHECK(fs::is_regular_file(dir + "/config.json"), option, " ", dir,
               ": no config.json (expected a folder as the hub ships ", hub_name, ")");
  return find_safetensors_weights(dir);
}

std::string read_hub_file(const std::string& dir, const std::string& file, const std::string& option) {
  XLTUNE_CHECK(fs::is_regular_file(dir + "/" + file), option, " ", dir, ": no ", file);
  return read_file(dir + "/" + file);
}

void load_hub_weights(torch::nn::Module& module, const std::string& weights, const std::string& what) {
  SafetensorsSet set(weights);
  load_module(module, tensors_under(set, ""), what);
  module.eval();
}

}  // namespace xltune
