// Reading JSON config files (diffusers and transformers config.json, scheduler_config.json)
// with errors that name the file and the field.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace xltune {

class ConfigReader {
 public:
  ConfigReader(const std::string& text, const std::string& source);
  const nlohmann::json& json() const { return json_; }
  bool has(const char* key) const { return json_.contains(key) && !json_[key].is_null(); }

  int64_t integer(const char* key, int64_t fallback) const;
  int64_t required_integer(const char* key) const;
  double number(const char* key, double fallback) const;
  bool boolean(const char* key, bool fallback) const;
  std::string string(const char* key, const std::string& fallback) const;
  std::vector<std::string> strings(const char* key) const;
  // A non-empty list of positive integers ("block_out_channels"); `fallback` when absent.
  std::vector<int64_t> positive_integers(const char* key, const std::vector<int64_t>& fallback) const;
  // An int repeated `count` times, or a list of exactly `count` ints.
  std::vector<int64_t> per_block(const char* key, size_t count, int64_t fallback) const;
  // Fails naming the key unless it is absent, null or equal to `expected`.
  void require_default(const char* key, const nlohmann::json& expected, const char* why) const;

 private:
  nlohmann::json json_;
  std::string source_;
};

}  // namespace xltune
