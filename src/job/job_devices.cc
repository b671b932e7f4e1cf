#include "job/job_devices.h"

#include <torch/cuda.h>
#ifdef XLTUNE_HAVE_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include "core/check.h"
#include "core/data_files.h"

namespace xltune {

at::Device resolve_device(const std::string& name, int local_rank) {
  const bool cuda = torch::cuda::is_available();
  if (name == "auto" && !cuda) return at::Device(at::kCPU);
  if (name == "cpu") return at::Device(at::kCPU);
  XLTUNE_CHECK(cuda, "--device ", name, ": this xltune's libtorch has no usable CUDA device");
  const int count = static_cast<int>(torch::cuda::device_count());
  const at::Device device = name == "auto" || name == "cuda"
                                ? at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(local_rank % count))
                                : at::Device(name);
  XLTUNE_CHECK(device.is_cuda() && device.index() < count, "--device ", name,
               ": expected auto, cpu, cuda or cuda:N with N below ", count, " (the CUDA devices this process sees)");
#ifdef XLTUNE_HAVE_CUDA
  // The process's current device, so that work without a device guard (lazy CUDA
  // initialisation, cuBLAS handles, torch::cuda::synchronize) does not make a context on GPU 0
  // for every rank (the GPU-readiness review's R4).
  c10::cuda::set_device(device.index());
#endif
  return device;
}

ClipTokenizer load_tokenizer(const std::string& dir, const char* pad) {
  return dir.empty() ? ClipTokenizer::from_bpe_file(clip_vocabulary_file(), pad) : ClipTokenizer::from_folder(dir);
}

}  // namespace xltune
