// Where a command's models run and in which precision, decided in one place.
//
// Note [One placement]
// Training, generation, the preprocessing models (in `xltune train`, `preprocess` and the
// `mask`, `caption` and `upscale` commands) and the benches all ask decide_placement() and apply
// what it says, so that a model runs in the same precision whichever command loads it:
//
//   device     --device: auto (the local rank's GPU when there is one, else the CPU), cpu, cuda,
//              cuda:N; one GPU per rank, made the process's current device
//   frozen     weights that do not train: bf16 on a GPU (half the memory and bandwidth, tensor
//              cores), fp32 on the CPU (where bf16 matmuls are slow and inexact, and parity with
//              the Python references is checked)
//   unet       the UNet: fp32 when it trains whole (its own master weights; autocast computes in
//              bf16 on a GPU), else frozen's
//   vae        training encodes each image once: fp32, exactly; generation decodes every image:
//              frozen's, upcast to fp32 where the VAE's config says force_upcast (the loader's
//              caller applies that)
//   autocast   bf16 autocast around the UNet: full fine-tuning on a GPU
//   tf32       TF32 for the fp32 matmuls and convolutions left on a GPU (LoRA's, the VAE's); kept
//              in deterministic mode: TF32 is a precision, and as deterministic as fp32
//   cudnn_benchmark
//              cuDNN times its convolution algorithms once per shape and keeps the fastest:
//              training on a GPU (its shapes are fixed), not in deterministic mode (the choice
//              follows the timings, so two runs may pick different algorithms)
//   deterministic
//              --deterministic: only deterministic kernels (Note [Deterministic mode])
//   threads    --threads: CPU threads for libtorch's intra-op pool (0: its default)
//   attention  --attention: the kernel of scaled-dot-product attention, auto (libtorch's choice
//              per shape, logged) or one forced (Note [Attention kernels], core/attention_kernel.h)
//
// LoRA adapters and token rows always train in fp32 (their optimizer's masters); the Trainer
// makes them.
#pragma once

#include <ATen/core/TensorBody.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

#include "core/attention_kernel.h"

namespace xltune {

enum class PlacementUse {
  kTrainLora,   // LoRA on a frozen UNet
  kTrainFull,   // the whole UNet trains
  kGenerate,    // txt2img, img2img, inpainting
  kPreprocess,  // CLIPSeg, BLIP, Swin2SR
};

struct Placement {
  at::Device device = at::Device(at::kCPU);
  at::ScalarType frozen = at::kFloat;
  at::ScalarType unet = at::kFloat;
  at::ScalarType vae = at::kFloat;
  bool autocast_bf16 = false;
  bool tf32 = false;
  bool cudnn_benchmark = false;
  bool deterministic = false;
  int threads = 0;
  AttentionKernel attention = AttentionKernel::kAuto;

  at::TensorOptions frozen_options() const { return at::TensorOptions().dtype(frozen).device(device); }
  at::TensorOptions unet_options() const { return at::TensorOptions().dtype(unet).device(device); }
  at::TensorOptions vae_options() const { return at::TensorOptions().dtype(vae).device(device); }
  // "cuda:0, frozen bf16, UNet fp32, VAE fp32, bf16 autocast, TF32, cuDNN benchmark" for logs
  // (", deterministic" in deterministic mode).
  std::string describe() const;
};

// The --device option's device for this local rank (see above); throws Error naming --device
// when it asks for a GPU this process cannot see. A GPU becomes the process's current device, so
// that work without a device guard does not make a context on GPU 0 for every rank.
at::Device resolve_device(const std::string& device_option, int local_rank);

// The placement for `use` on `device` (the policy above, without looking for GPUs).
Placement placement_for(at::Device device, PlacementUse use, int threads = 0, bool deterministic = false);
// The placement for `use` on --device `device_option`, with --threads `threads` and --deterministic.
Placement decide_placement(const std::string& device_option, int local_rank, PlacementUse use, int threads = 0,
                           bool deterministic = false);

// Note [Deterministic mode]
// --deterministic true asks for bit-identical runs and resumes on GPUs too (the CPU's kernels are
// deterministic already; ../../docs/design.md "What each mode promises"). It takes two steps, at
// two moments:
//   1. set_deterministic_environment(), in the command before its communicator: libtorch reads
//      the cuBLAS variable once, at its first cuBLAS handle, NCCL its variables when the first
//      communicator is made, and setenv is safe only while no other thread reads the environment
//      (MPI's initialisation starts threads, and may touch CUDA):
//      CUBLAS_WORKSPACE_CONFIG=:4096:8 (cuBLAS is bitwise reproducible only with a fixed workspace;
//      libtorch refuses every CUDA matmul under deterministic algorithms without it) and
//      NCCL_ALGO=Ring (Ring's order of the sums is fixed by the topology and the ranks; NVLS and
//      CollNet reduce in the switch or the network), each unless the user set it.
//   2. apply_placement(): at::globalContext().setDeterministicAlgorithms(true, warn_only=false), so
//      that every op with a deterministic implementation uses it (convolution backwards, index
//      backwards, flash attention's backward, memory-efficient attention's with one key split)
//      and one without one throws instead of silently differing; cuDNN SDPA is not chosen under
//      it (libtorch's sdp_utils check_cudnn_deterministic); setDeterministicCuDNN(true) and no
//      cuDNN benchmark. Attention stays with the backend SDPA picks (flash on an A40 or H100, or
//      memory-efficient): both are deterministic under the flag, and the math backend would hold
//      the whole 4096 x 4096 score matrix per head at 1024 px.
// Libtorch also fills new allocations (at::empty) with NaN under the flag (its
// fill_uninitialized_memory default), which costs a write per allocation.
void set_deterministic_environment();

// The process-wide parts: libtorch's thread count, TF32, cuDNN's benchmark, deterministic
// algorithms, the attention kernels enabled (each set to what the placement says). Call once, before the models load; with
// `deterministic` on a GPU, after set_deterministic_environment() (an error otherwise).
void apply_placement(const Placement& placement);

}  // namespace xltune
