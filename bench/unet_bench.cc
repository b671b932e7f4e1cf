// The C++ half of bench/unet.py, and the peak-memory probe of the gradient-checkpointing test.
//
//   xltune_bench_unet time UNET_DIR BATCH SIZE REPEATS [channels-last]
//                                                           fwd+bwd of a saved UNet (best of REPEATS)
//   xltune_bench_unet vae VAE_DIR BATCH SIZE REPEATS        VAE encode
//   xltune_bench_unet memory UNET_CONFIG plain|recompute BATCH SIZE
//                                                           peak resident memory of one fwd+bwd
//   xltune_bench_unet gpu UNET_CONFIG plain|recompute|channels-last BATCH SIZE REPEATS
//                                                           bf16 fwd+bwd on CUDA (bench/gpu/run):
//                                                           median ms and peak GPU memory;
//                                                           channels-last: the convolutions' weights
//                                                           and the latents in NHWC (issue 18: does
//                                                           cuDNN's NHWC path measure faster?)
//   xltune_bench_unet gpu-graph UNET_CONFIG plain|recompute BATCH SIZE REPEATS
//                                                           the same fwd+bwd eager, then captured
//                                                           as one CUDA graph and replayed: the
//                                                           GPU's own time, with no host between
//                                                           its kernels (issue 18, item 5)
// SIZE is the latent side (UNet) or image side (VAE). Prints one JSON line.
#include <ATen/ATen.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <algorithm>
#include <string>
#include <vector>

#include <torch/cuda.h>

#include "bench_util.h"
#include "core/check.h"
#include "core/error.h"
#include "core/placement.h"
#include "models/model_loading.h"

// CPU builds of libtorch ship part of c10/cuda's headers, so CMake says whether CUDA is there.
#ifdef XLTUNE_BENCH_CUDA_STATS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace {

using xltune::bench::now;

// The CUDA allocator's peak of allocated bytes on device 0, in GiB (-1 without CUDA).
double peak_allocated_gib() {
#ifdef XLTUNE_BENCH_CUDA_STATS
  return static_cast<double>(c10::cuda::CUDACachingAllocator::getDeviceStats(0)
                                 .allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)]
                                 .peak) / (1 << 30);
#else
  return -1;
#endif
}

long peak_rss_kib() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

struct Inputs {
  at::Tensor sample, timestep, context, text_embeds, time_ids;
};

Inputs make_inputs(const xltune::UNetConfig& c, int64_t batch, int64_t size,
                   const at::TensorOptions& o = at::TensorOptions()) {
  at::manual_seed(0);
  Inputs in;
  in.sample = at::randn({batch, c.in_channels, size, size}, o);
  in.timestep = at::full({batch}, 500.0, o.dtype(at::kFloat));
  in.context = at::randn({batch, 77, c.cross_attention_dim[0]}, o);
  in.text_embeds = at::randn({batch, c.text_embeds_dim()}, o);
  in.time_ids = at::tensor({1024.0f, 1024.0f, 0.0f, 0.0f, 1024.0f, 1024.0f}).repeat({batch, 1}).to(o);
  return in;
}

// The eager fwd+bwd of gpu_probe captured as one CUDA graph (warmed up on a side stream first, as
// capture needs), then replayed: the median ms of a replay against the eager median. The gap is
// what the host costs the step today; what capturing the training step (issue 18, item 5) can
// win at most on this part of it.
int graph_probe(xltune::UNet& unet, const Inputs& in, int repeats, double eager_s, char** argv) {
#ifdef XLTUNE_BENCH_CUDA_STATS
  const auto fwd_bwd_once = [&] {
    at::Tensor out = unet->forward(in.sample, in.timestep, in.context, in.text_embeds, in.time_ids);
    out.to(at::kFloat).square().mean().backward();
  };
  c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool();
  torch::cuda::synchronize();
  {
    c10::cuda::CUDAStreamGuard on_side(side);
    for (int r = 0; r < 2; ++r) {
      for (auto& p : unet->parameters()) p.mutable_grad() = at::Tensor();
      fwd_bwd_once();
    }
  }
  torch::cuda::synchronize();
  for (auto& p : unet->parameters()) p.mutable_grad() = at::Tensor();
  at::cuda::CUDAGraph graph;
  {
    c10::cuda::CUDAStreamGuard on_side(side);
    graph.capture_begin();
    fwd_bwd_once();  // the gradients are allocated in the graph's pool; each replay rewrites them
    graph.capture_end();
  }
  torch::cuda::synchronize();
  std::vector<double> times;
  for (int r = 0; r <= repeats; ++r) {
    const double start = now();
    graph.replay();
    torch::cuda::synchronize();
    if (r > 0) times.push_back(now() - start);
  }
  std::sort(times.begin(), times.end());
  const double peak_gib = peak_allocated_gib();
  std::printf("{\"impl\": \"xltune\", \"batch\": %s, \"latent\": %s, \"checkpointing\": \"%s\", \"graph\": true, "
              "\"ms\": %.2f, \"eager_ms\": %.2f, \"eager_over_graph\": %.3f, \"peak_gib\": %.3f}\n",
              argv[4], argv[5], argv[3], times[times.size() / 2] * 1e3, eager_s * 1e3,
              eager_s / times[times.size() / 2], peak_gib);
  return 0;
#else
  (void)unet, (void)in, (void)repeats, (void)eager_s, (void)argv;
  XLTUNE_CHECK(false, "gpu-graph: this build has no CUDA");
  return 1;
#endif
}

// The 4-D weights and the latents in channels-last (NHWC) memory format: cuDNN's tensor-core
// convolutions prefer it, and the format propagates through the convolutions that follow.
void to_channels_last(xltune::UNet& unet, Inputs& in) {
  at::NoGradGuard no_grad;
  for (auto& p : unet->parameters())
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  in.sample = in.sample.contiguous(at::MemoryFormat::ChannelsLast);
}

// Full-size UNet on the GPU: random bf16 weights (no download), all trainable.
int gpu_probe(char** argv) {
  const bool recompute = std::string(argv[3]) == "recompute";
  const int64_t batch = std::stoll(argv[4]), size = std::stoll(argv[5]);
  const int repeats = std::stoi(argv[6]);
  XLTUNE_CHECK(torch::cuda::is_available(), "no CUDA device");
  // Frozen weights as training places them (Note [One placement]): bf16 on the GPU.
  const auto o = xltune::placement_for(at::Device(at::kCUDA, 0), xltune::PlacementUse::kTrainLora).frozen_options();
  xltune::UNetConfig c = xltune::UNetConfig::from_json_file(argv[2]);
  xltune::UNet unet(c, o);
  {
    at::NoGradGuard no_grad;
    for (auto& p : unet->parameters()) p.normal_(0, 0.02);
  }
  unet->set_gradient_checkpointing(recompute);
  Inputs in = make_inputs(c, batch, size, o);
  if (std::string(argv[3]) == "channels-last") to_channels_last(unet, in);
#ifdef XLTUNE_BENCH_CUDA_STATS
  c10::cuda::CUDACachingAllocator::resetPeakStats(0);
#endif
  const bool graph = std::string(argv[1]) == "gpu-graph";
  std::vector<double> times;
  try {
    for (int r = 0; r <= repeats; ++r) {
      for (auto& p : unet->parameters()) p.mutable_grad() = at::Tensor();
      torch::cuda::synchronize();
      double start = now();
      at::Tensor out = unet->forward(in.sample, in.timestep, in.context, in.text_embeds, in.time_ids);
      out.to(at::kFloat).square().mean().backward();
      torch::cuda::synchronize();
      if (r > 0) times.push_back(now() - start);  // the first run warms up cuDNN and the allocator
    }
  } catch (const c10::OutOfMemoryError&) {
    std::printf("{\"impl\": \"xltune\", \"batch\": %lld, \"latent\": %lld, \"checkpointing\": \"%s\", \"oom\": true}\n",
                static_cast<long long>(batch), static_cast<long long>(size), argv[3]);
    return 0;
  }
  std::sort(times.begin(), times.end());
  if (graph) return graph_probe(unet, in, repeats, times[times.size() / 2], argv);
  const double peak_gib = peak_allocated_gib();
  std::printf("{\"impl\": \"xltune\", \"batch\": %lld, \"latent\": %lld, \"checkpointing\": \"%s\", "
              "\"ms\": %.2f, \"peak_gib\": %.3f}\n",
              static_cast<long long>(batch), static_cast<long long>(size), argv[3], times[times.size() / 2] * 1e3, peak_gib);
  return 0;
}

double fwd_bwd(xltune::UNet& unet, const Inputs& in) {
  double start = now();
  at::Tensor out = unet->forward(in.sample, in.timestep, in.context, in.text_embeds, in.time_ids);
  out.square().mean().backward();
  return now() - start;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s time|vae DIR BATCH SIZE REPEATS | memory CONFIG plain|recompute BATCH SIZE\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  at::set_num_threads(2);
  try {
    if (mode == "gpu" || mode == "gpu-graph") {
      XLTUNE_CHECK(argc == 7, "usage: gpu|gpu-graph CONFIG plain|recompute|channels-last BATCH SIZE REPEATS");
      return gpu_probe(argv);
    }
    if (mode == "memory") {
      const bool recompute = std::string(argv[3]) == "recompute";
      xltune::UNetConfig c = xltune::UNetConfig::from_json_file(argv[2]);
      xltune::UNet unet(c, at::TensorOptions());
      {
        at::NoGradGuard no_grad;
        for (auto& p : unet->parameters()) p.normal_(0, 0.02);
      }
      unet->set_gradient_checkpointing(recompute);
      Inputs in = make_inputs(c, std::stoll(argv[4]), std::stoll(argv[5]));
      const long before = peak_rss_kib();
      fwd_bwd(unet, in);
      const long after = peak_rss_kib();
      std::printf("{\"mode\": \"%s\", \"peak_rss_kib\": %ld, \"growth_kib\": %ld}\n", argv[3], after, after - before);
      return 0;
    }
    const int64_t batch = std::stoll(argv[3]), size = std::stoll(argv[4]);
    const int repeats = std::stoi(argv[5]);
    double best = 1e30;
    if (mode == "time") {
      xltune::UNet unet = xltune::load_unet(argv[2]);
      Inputs in = make_inputs(unet->config(), batch, size);
      if (argc > 6 && std::string(argv[6]) == "channels-last") to_channels_last(unet, in);
      fwd_bwd(unet, in);  // warm-up
      for (int r = 0; r < repeats; ++r) {
        for (auto& p : unet->parameters()) p.mutable_grad() = at::Tensor();
        best = std::min(best, fwd_bwd(unet, in));
      }
    } else if (mode == "vae") {
      xltune::Vae vae = xltune::load_vae(argv[2]);
      at::manual_seed(0);
      at::Tensor image = at::rand({batch, 3, size, size}) * 2 - 1;
      at::NoGradGuard no_grad;
      vae->encode(image);
      for (int r = 0; r < repeats; ++r) {
        double start = now();
        vae->encode(image).mean.sum().item<float>();
        best = std::min(best, now() - start);
      }
    } else {
      std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
      return 2;
    }
    std::printf("{\"impl\": \"xltune\", \"mode\": \"%s\", \"seconds\": %.6f}\n", mode.c_str(), best);
  } catch (const std::exception& e) {  // c10::Error too (a CUDA error): one message, never std::terminate
    std::fprintf(stderr, "xltune_bench_unet: %s\n", e.what());
    return 1;
  }
  return 0;
}
