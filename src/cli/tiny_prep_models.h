// `xltune init-model --preset tiny-clipseg|tiny-blip|tiny-swin2sr`: random preprocessing models
// in the hub's layout (config.json, model.safetensors, preprocessor_config.json, tokenizer
// files), small enough that the tests and the quickstart run the whole preprocessing on a CPU.
// Same seed, same bytes. Each returns the number of parameters written.
#pragma once

#include <cstdint>
#include <string>

namespace xltune::cli {

int64_t write_tiny_clipseg(const std::string& out, uint64_t seed);
int64_t write_tiny_blip(const std::string& out, uint64_t seed);
int64_t write_tiny_swin2sr(const std::string& out, uint64_t seed);

}  // namespace xltune::cli
