// Peak memory, for metrics.jsonl and the benchmarks: on a CUDA device, the caching
// allocator's peak of allocated bytes since the last reset; on the CPU, the process's peak
// resident set (getrusage), which cannot be reset.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>

namespace xltune {

int64_t peak_memory_bytes(const c10::Device& device);
void reset_peak_memory(const c10::Device& device);

}  // namespace xltune
