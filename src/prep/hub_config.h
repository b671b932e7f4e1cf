// What the three preprocessing models share in reading a hub folder (config.json,
// preprocessor_config.json, model.safetensors): one JSON parse whose errors name the file, typed
// fields that fall back to transformers' defaults where a key is missing or null, and the
// folder checks and weight loading of load_clipseg / load_blip / load_swin2sr.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

namespace xltune {

// The text as a JSON object; errors name `source` (the file).
nlohmann::json parse_config_object(const std::string& text, const std::string& source);

// Field `key` of `j`, or `fallback` where it is missing or null; a value of another type is an
// error naming `source` and the key.
int64_t config_int(const nlohmann::json& j, const char* key, int64_t fallback, const std::string& source);
double config_number(const nlohmann::json& j, const char* key, double fallback, const std::string& source);
bool config_bool(const nlohmann::json& j, const char* key, bool fallback, const std::string& source);

// The weights file of a model folder as the hub ships it: the folder and its config.json must
// exist (errors name `option`, the folder and `hub_name`, the model expected), then
// find_safetensors_weights (a pickle-only folder is an error that says how to convert it).
std::string hub_model_weights(const std::string& dir, const std::string& option, const std::string& hub_name);

// The text of `file` in a model folder, which must have it (an error naming `option`, the folder
// and the file, e.g. "--blip_model DIR: no preprocessor_config.json").
std::string read_hub_file(const std::string& dir, const std::string& file, const std::string& option);

// Every parameter of `module` from the weights file, by name (core/state_dict.h: missing and
// wrong-shape tensors are one error naming them and `what`); then eval mode.
void load_hub_weights(torch::nn::Module& module, const std::string& weights, const std::string& what);

}  // namespace xltune
