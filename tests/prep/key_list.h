// A module's tensors against a full-size key and shape list (keys.json, written from
// transformers' meta-device model by tests/reference/full_size_keys.py).
#pragma once

#include <gtest/gtest.h>
#include <torch/nn/module.h>

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/atomic_file.h"

namespace xltune::testing_util {

// EXPECTs no missing, extra or other-shaped tensor (named in the failure); returns how many
// tensors the module has. `skip`: expected keys that the module leaves out on purpose (buffers
// computed rather than loaded, tied weights).
inline size_t expect_key_list(const torch::nn::Module& module, const std::string& keys_json,
                              const std::function<bool(const std::string&)>& skip = {}) {
  const auto expected = nlohmann::json::parse(read_file(keys_json));
  std::map<std::string, std::vector<int64_t>> ours;
  for (const auto& p : module.named_parameters()) ours[p.key()] = p.value().sizes().vec();
  for (const auto& b : module.named_buffers()) ours[b.key()] = b.value().sizes().vec();
  std::vector<std::string> missing, extra, shape;
  for (auto it = expected.begin(); it != expected.end(); ++it) {
    if (skip && skip(it.key())) continue;
    auto o = ours.find(it.key());
    if (o == ours.end()) missing.push_back(it.key());
    else if (o->second != it.value().get<std::vector<int64_t>>()) shape.push_back(it.key());
  }
  for (const auto& [k, v] : ours)
    if (!expected.contains(k)) extra.push_back(k);
  EXPECT_TRUE(missing.empty()) << missing.size() << " missing, e.g. " << (missing.empty() ? "" : missing[0]);
  EXPECT_TRUE(extra.empty()) << extra.size() << " extra, e.g. " << (extra.empty() ? "" : extra[0]);
  EXPECT_TRUE(shape.empty()) << shape.size() << " of other shapes, e.g. " << (shape.empty() ? "" : shape[0]);
  return ours.size();
}

}  // namespace xltune::testing_util
