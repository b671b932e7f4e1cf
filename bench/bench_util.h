// What every C++ bench repeats: a clock, the median of its repetitions, and a main that prints a
// failure as one line naming the bench (the Python drivers in bench/ read its exit status).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <vector>

namespace xltune::bench {

// Seconds on a steady clock.
inline double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The upper median of the repetitions (0 for none): one run is noisy on a shared machine.
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// run(argc, argv), with an exception reported as "NAME: what" and exit status 1.
inline int main_of(const char* name, int (*run)(int, char**), int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace xltune::bench
