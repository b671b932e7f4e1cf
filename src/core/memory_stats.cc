#include "core/memory_stats.h"

#include <sys/resource.h>

#ifdef XLTUNE_HAVE_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace xltune {

int64_t peak_memory_bytes(const c10::Device& device) {
#ifdef XLTUNE_HAVE_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
  }
#endif
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // kilobytes on Linux
}

void reset_peak_memory(const c10::Device& device) {
#ifdef XLTUNE_HAVE_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index() < 0 ? 0 : device.index());
#else
  (void)device;
#endif
}

}  // namespace xltune
