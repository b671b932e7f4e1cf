#include "job/job_devices.h"

#include <torch/cuda.h>

#include "core/check.h"
#include "core/data_files.h"

namespace xltune {

at::Device resolve_device(const std::string& name, int local_rank) {
  const bool cuda = torch::cuda::is_available();
  if (name == "auto" && !cuda) return at::Device(at::kCPU);
  if (name == "cpu") return at::Device(at::kCPU);
  XLTUNE_CHECK(cuda, "--device ", name, ": this xltune's libtorch has no usable CUDA device");
  if (name == "auto" || name == "cuda") {
    const int count = static_cast<int>(torch::cuda::device_count());
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(local_rank % count));
  }
  return at::Device(name);
}

ClipTokenizer load_tokenizer(const std::string& dir, const char* pad) {
  return dir.empty() ? ClipTokenizer::from_bpe_file(clip_vocabulary_file(), pad) : ClipTokenizer::from_folder(dir);
}

}  // namespace xltune
