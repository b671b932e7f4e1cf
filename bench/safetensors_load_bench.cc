// Times loading a safetensors file into libtorch tensors, the C++ half of
// bench/safetensors_load.py (which runs Python's safetensors on the same file in the same
// invocation and prints the ratio).
//
//   xltune_bench_safetensors FILE REPEATS
//
// Prints one JSON line per mode with the best time of REPEATS runs:
//   open  : header parsed, every tensor created as a view of the mapping (no data read)
//   clone : every tensor copied into memory of its own (all data read)
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "core/error.h"
#include "core/safetensors.h"

namespace {
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s FILE REPEATS\n", argv[0]);
    return 2;
  }
  const std::string path = argv[1];
  const int repeats = std::stoi(argv[2]);
  at::set_num_threads(1);  // Python's clone loop runs on one thread too
  try {
    double best_open = 1e30, best_clone = 1e30;
    size_t count = 0;
    uint64_t bytes = 0;
    for (int r = 0; r < repeats; ++r) {
      auto start = std::chrono::steady_clock::now();
      xltune::NamedTensors views = xltune::load_safetensors(path, /*copy=*/false);
      best_open = std::min(best_open, seconds_since(start));

      start = std::chrono::steady_clock::now();
      xltune::NamedTensors owned = xltune::load_safetensors(path, /*copy=*/true);
      best_clone = std::min(best_clone, seconds_since(start));
      count = owned.size();
      bytes = 0;
      for (const auto& [name, t] : owned) bytes += t.nbytes();
    }
    std::printf("{\"impl\": \"xltune\", \"mode\": \"open\", \"seconds\": %.6f, \"tensors\": %zu, \"bytes\": %llu}\n",
                best_open, count, static_cast<unsigned long long>(bytes));
    std::printf("{\"impl\": \"xltune\", \"mode\": \"clone\", \"seconds\": %.6f, \"tensors\": %zu, \"bytes\": %llu}\n",
                best_clone, count, static_cast<unsigned long long>(bytes));
  } catch (const std::exception& e) {  // c10::Error too (a CUDA error): one message, never std::terminate
    std::fprintf(stderr, "xltune_bench_safetensors: %s\n", e.what());
    return 1;
  }
  return 0;
}
