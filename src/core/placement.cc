#include "core/placement.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#ifdef XLTUNE_HAVE_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <cstdlib>
#include <string>

#include "core/check.h"

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
  c10::cuda::set_device(device.index());  // the GPU-readiness review's R4
#endif
  return device;
}

Placement decide_placement(const std::string& device_option, int local_rank, PlacementUse use, int threads,
                           bool deterministic) {
  return placement_for(resolve_device(device_option, local_rank), use, threads, deterministic);
}

Placement placement_for(at::Device device, PlacementUse use, int threads, bool deterministic) {
  Placement p;
  p.device = device;
  p.threads = threads;
  const bool gpu = p.device.is_cuda();
  p.frozen = gpu ? at::kBFloat16 : at::kFloat;
  p.unet = use == PlacementUse::kTrainFull ? at::kFloat : p.frozen;
  p.vae = use == PlacementUse::kGenerate ? p.frozen : at::kFloat;
  p.autocast_bf16 = gpu && use == PlacementUse::kTrainFull;
  p.tf32 = gpu;
  const bool training = use == PlacementUse::kTrainLora || use == PlacementUse::kTrainFull;
  p.deterministic = deterministic;
  p.cudnn_benchmark = gpu && training && !deterministic;
  return p;
}

void set_deterministic_environment() {
  setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  setenv("NCCL_ALGO", "Ring", /*overwrite=*/0);
}

void apply_placement(const Placement& p) {
  // First, so that a refused placement changes nothing.
  if (p.deterministic && p.device.is_cuda()) {
    // cuBLAS read it when its first handle was made: too late to set here (Note [Deterministic mode]).
    const char* workspace = std::getenv("CUBLAS_WORKSPACE_CONFIG");
    const std::string w = workspace != nullptr ? workspace : "";
    XLTUNE_CHECK(w == ":4096:8" || w == ":16:8", "--deterministic true on ", p.device.str(),
                 ": CUBLAS_WORKSPACE_CONFIG is '", w, "'; expected :4096:8 or :16:8, set before CUDA starts ",
                 "(set_deterministic_environment)");
  }
  if (p.threads > 0) at::set_num_threads(p.threads);
  if (p.tf32) {
    at::globalContext().setAllowTF32CuBLAS(true);
    at::globalContext().setAllowTF32CuDNN(true);
  }
  // Each flag set either way, so that the placement alone says what the process runs with. Only
  // when it changes: ranks as threads apply their placements at once.
  at::Context& ctx = at::globalContext();
  if (ctx.deterministicAlgorithms() != p.deterministic || ctx.deterministicAlgorithmsWarnOnly())
    ctx.setDeterministicAlgorithms(p.deterministic, /*warn_only=*/false);
  if (ctx.deterministicCuDNN() != p.deterministic) ctx.setDeterministicCuDNN(p.deterministic);
  if (ctx.benchmarkCuDNN() != p.cudnn_benchmark) ctx.setBenchmarkCuDNN(p.cudnn_benchmark);
  set_attention_kernel(p.attention);
}

std::string Placement::describe() const {
  auto name = [](at::ScalarType t) { return t == at::kBFloat16 ? std::string("bf16") : std::string("fp32"); };
  std::string s = device.str() + ", frozen " + name(frozen) + ", UNet " + name(unet) + ", VAE " + name(vae);
  if (autocast_bf16) s += ", bf16 autocast";
  if (tf32) s += ", TF32";
  if (cudnn_benchmark) s += ", cuDNN benchmark";
  if (deterministic) s += ", deterministic";
  if (attention != AttentionKernel::kAuto) s += std::string(", attention ") + attention_kernel_name(attention);
  return s;
}

}  // namespace xltune
