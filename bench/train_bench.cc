// The C++ half of bench/train.py and of bench/gpu/run's training cases: optimization steps of
// the real Trainer (train/trainer.h) on synthetic batches, before and after the pivot.
//
//   xltune_bench_train MODEL_DIR|sdxl-base DEVICE lora|full RESOLUTION BATCH STEPS [checkpointing|plain]
//                      [nccl|deterministic|graph|graph-deterministic|graph-reduced|graph-accumulated|
//                       graph-bf16-state]
//
// MODEL_DIR: a diffusers folder (xltune init-model --preset small); sdxl-base: SDXL base 1.0's
// UNet and both text encoders built from their configs with random weights (no download; for
// the GPU machine). DEVICE cpu or cuda. Frozen weights bf16 on CUDA, fp32 on the CPU, as
// `xltune train`. Times STEPS steps while the token rows train (the encoders run with
// gradients) and STEPS steps after the pivot (text conditioning cached), each after one
// untimed step. Prints one JSON line per phase: ms per step (median), steps/s, peak memory
// (GPU allocator peak, or the process's peak RSS on the CPU), and "phases": per phase of the
// step (train/trainer.h's StepPhaseListener: draws, text, forward, backward, clip, optimizer) the
// median host time (how long the CPU took to issue it) and device time (CUDA events on the
// current stream: how long the GPU took, waits for the host included; on the CPU the host time).
// A device time much above the host time is GPU work; host time near or above the device time
// means a GPU waiting on the host.
//
// nccl (CUDA builds with NCCL): instead, STEPS steps twice from the same start, once with the
// gradients going through the bucketed reducer over a one-rank NCCL communicator (no MPI: the
// path multi-GPU runs take, streams, events and all) and once without; prints whether the losses
// agree. An all-reduce over one rank is the identity, but the GPU backward is not deterministic
// (atomics in the attention and cuDNN backwards), so only step 1's loss (a forward from the same
// weights) must be bit-equal; later steps must agree within a relative kNcclRelTolerance. The JSON
// line gives the largest relative difference and the tolerance; the exit status is 1 when they
// do not agree.
//
// deterministic: instead, 1 + STEPS steps twice from the same start under --deterministic's
// placement (Note [Deterministic mode]: CUBLAS_WORKSPACE_CONFIG set first, libtorch's
// deterministic algorithms, no cuDNN benchmark); every step's loss and gradient norm must be
// bit-equal between the two. The JSON line gives the median ms per step of each (what determinism
// costs is this against the plain case's before_pivot ms) and whether they agree; the exit status
// is 1 when they do not.
//
// graph, graph-deterministic: instead, Note [The step as a CUDA graph] (train/trainer.h) measured
// and checked: two runs from the same start, one with the static-input step run eagerly
// (TrainerConfig::StepGraph::kStatic) and one captured (kCuda; on the CPU kStatic again, the
// plumbing only). Each: step 1 before the pivot, kGraphWarmupSteps eager steps, the capture, then
// STEPS timed steps (replays), each waited for; then STEPS more, each read after the next is
// queued (Note [Reading a step one step late], train/trainer.h), timed together. The JSON line
// gives the median ms per timed step of each, their ratio, the ms per step read late of each, the
// peak GiB of each, the replays counted and the largest relative loss difference. ok: every timed
// step a replay (on the CPU, one the static step stands in for), and the losses
// within kGraphRelTolerance (graph; the GPU's backward is not deterministic) or bit-equal
// (graph-deterministic, under --deterministic's placement: the captured kernels are the eager
// ones). Exit status 1 when not ok.
//
// graph-reduced: graph-deterministic with the gradients through the bucketed reducer over one
// rank (NCCL on a CUDA build with it; the in-process communicator otherwise): the step captured in
// two segments with the all-reduce run between them, as several GPUs run it. Bit-equal to the
// same step run eagerly.
//
// graph-accumulated: graph-deterministic with each step in two micro-batches of BATCH (the
// second's samples at the next positions: other draws): each micro-batch's forward and backward
// captured as a graph of its own and the update as a third (Note [Gradient accumulation]).
// Bit-equal to the same step run eagerly.
//
// graph-bf16-state: graph-deterministic with bf16 optimizer state, whose stochastic rounding
// reads each step's key from a device tensor staged before the replay (Note [Rounding bits from a
// keyed hash], train/adamw.cc): a replay that reused its capture's key would round the moments
// with the same bits every step and part from the eager losses. Bit-equal to the eager step.
#include <ATen/ATen.h>
#include <torch/cuda.h>
#ifdef XLTUNE_HAVE_CUDA
#include <c10/cuda/CUDAEvent.h>  // not ATen/cuda/: that pulls in cuBLAS and cuSPARSE headers
#endif

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.h"
#include "core/check.h"
#include "core/error.h"
#include "core/memory_stats.h"
#include "core/placement.h"
#include "dist/communicator.h"
#include "dist/bucketed_reducer.h"
#include "dist/gradient_reducer.h"
#ifdef XLTUNE_HAVE_NCCL
#include "dist/nccl_communicator.h"
#endif
#include "sdxl/sdxl_model.h"
#include "train/trainer.h"
#include "synthetic_step.h"

namespace xltune {
namespace {

using bench::now;

using bench::median;

// Host and device time of each phase of the steps it hears (see the top of this file).
class PhaseClock : public StepPhaseListener {
 public:
  explicit PhaseClock(bool cuda) : cuda_(cuda) {}

  void mark(const char* phase) override {
    names_.emplace_back(phase);
    host_.push_back(now());
#ifdef XLTUNE_HAVE_CUDA
    if (cuda_) {
      events_.emplace_back(cudaEventDefault);  // timing on
      events_.back().record();
    }
#endif
  }

  // After the step has been synchronized: keeps its phase times, forgets its marks.
  void collect() {
    for (size_t i = 1; i < names_.size(); ++i) {
      Phase& p = phase(names_[i]);
      p.host_ms.push_back((host_[i] - host_[i - 1]) * 1e3);
      double device_ms = p.host_ms.back();
#ifdef XLTUNE_HAVE_CUDA
      if (cuda_) device_ms = events_[i - 1].elapsed_time(events_[i]);
#endif
      p.device_ms.push_back(device_ms);
    }
    names_.clear(), host_.clear();
#ifdef XLTUNE_HAVE_CUDA
    events_.clear();
#endif
  }

  // {"draws": {"host_ms": .., "device_ms": ..}, ...}: medians over the collected steps.
  std::string json() const {
    std::string out = "{";
    char buffer[160];
    for (const Phase& p : phases_) {
      std::snprintf(buffer, sizeof buffer, "%s\"%s\": {\"host_ms\": %.3f, \"device_ms\": %.3f}", out.size() > 1 ? ", " : "",
                    p.name.c_str(), median(p.host_ms), median(p.device_ms));
      out += buffer;
    }
    return out + "}";
  }

  void reset() { phases_.clear(); }

 private:
  struct Phase {
    std::string name;
    std::vector<double> host_ms, device_ms;
  };
  Phase& phase(const std::string& name) {
    for (Phase& p : phases_)
      if (p.name == name) return p;
    phases_.push_back({name, {}, {}});
    return phases_.back();
  }

  bool cuda_;
  std::vector<std::string> names_;
  std::vector<double> host_;
#ifdef XLTUNE_HAVE_CUDA
  std::vector<c10::cuda::CUDAEvent> events_;
#endif
  std::vector<Phase> phases_;  // in the order the step marks them
};

void fill_random(torch::nn::Module& m) {
  at::NoGradGuard no_grad;
  for (auto& p : m.parameters()) p.normal_(0, 0.02);
}

// SDXL base 1.0, random weights: the real shapes, for speed and memory only.
SdxlModel sdxl_base(const at::TensorOptions& unet_o, const at::TensorOptions& te_o) {
  SdxlModel m = bench::sdxl_base_shapes(unet_o, te_o);
  fill_random(*m.unet);
  fill_random(*m.te1);
  fill_random(*m.te2);
  return m;
}

template <typename LoadModel>
int nccl_check(LoadModel load_model, bool lora, const at::Device& device, int64_t resolution, int64_t batch,
               int64_t steps) {
#ifdef XLTUNE_HAVE_NCCL
  // The bound on the relative loss difference after step 1 (see the header).
  constexpr double kNcclRelTolerance = 1e-5;
  XLTUNE_CHECK(device.is_cuda(), "nccl: needs --device cuda");
  const StepBatch b = bench::synthetic_batch(batch, resolution / 8, device);
  std::vector<double> losses[2];
  for (int with_nccl = 0; with_nccl < 2; ++with_nccl) {
    SdxlModel m = load_model();
    SingleProcessCommunicator single;
    std::unique_ptr<NcclCommunicator> nccl_comm;
    std::shared_ptr<GradientReducer> reducer;
    if (with_nccl) {
      nccl_comm = std::make_unique<NcclCommunicator>(0, 1, device, "");
      BucketedReducer::Options o;
      o.reduce_one_rank = true;
      reducer = std::make_shared<BucketedReducer>(*nccl_comm, o);
    } else {
      reducer = std::make_shared<AfterBackwardReducer>(single);
    }
    Trainer t(m, bench::synthetic_config(lora, steps, false, placement_for(device, lora ? PlacementUse::kTrainLora : PlacementUse::kTrainFull)), 0.13025, reducer);
    for (int64_t s = 1; s <= steps; ++s) losses[with_nccl].push_back(t.step(s, b).loss);
  }
  // Step 1 (index 0): bit-equal. Later steps: |a - b| <= tolerance * max(|a|, |b|). A NaN on either
  // side fails (every comparison with it is false).
  const bool step1_equal = steps > 0 && losses[0][0] == losses[1][0];
  bool later_ok = true;
  double worst_abs = 0, worst_rel = 0;
  for (int64_t s = 0; s < steps; ++s) {
    const double plain = losses[0][s], reduced = losses[1][s];
    const double diff = std::abs(plain - reduced), scale = std::max(std::abs(plain), std::abs(reduced));
    const double rel = diff == 0 ? 0.0 : (scale > 0 ? diff / scale : diff);
    if (!(diff <= worst_abs)) worst_abs = diff;  // a NaN sticks
    if (!(rel <= worst_rel)) worst_rel = rel;
    if (s > 0 && !(rel <= kNcclRelTolerance)) later_ok = false;
  }
  const bool ok = step1_equal && later_ok;
  auto number = [](double x) {  // JSON has no NaN or infinity: null
    char text[32] = "null";
    if (std::isfinite(x)) std::snprintf(text, sizeof text, "%.3g", x);
    return std::string(text);
  };
  std::printf("{\"impl\": \"xltune\", \"check\": \"nccl one rank vs no reducer\", \"mode\": \"%s\", \"steps\": %lld, "
              "\"step1_bit_equal\": %s, \"max_loss_diff\": %s, \"max_rel_diff\": %s, \"rel_tolerance\": %.1g, "
              "\"ok\": %s}\n",
              lora ? "lora" : "full", static_cast<long long>(steps), step1_equal ? "true" : "false",
              number(worst_abs).c_str(), number(worst_rel).c_str(), kNcclRelTolerance, ok ? "true" : "false");
  std::fflush(stdout);
  return ok ? 0 : 1;
#else
  (void)load_model, (void)lora, (void)device, (void)resolution, (void)batch, (void)steps;
  std::fprintf(stderr, "xltune_bench_train: built without NCCL\n");
  return 2;
#endif
}

// The "deterministic" mode (see the top of this file).
template <typename LoadModel>
int determinism_check(LoadModel load_model, bool lora, bool checkpointing, const Placement& placement,
                      int64_t resolution, int64_t batch, int64_t steps) {
  const at::Device device = placement.device;
  const StepBatch b = bench::synthetic_batch(batch, resolution / 8, device);
  std::vector<double> losses[2], norms[2], ms[2];
  for (int run = 0; run < 2; ++run) {
    SdxlModel m = load_model();
    SingleProcessCommunicator single;
    Trainer t(m, bench::synthetic_config(lora, steps, checkpointing, placement), 0.13025,
              std::make_shared<AfterBackwardReducer>(single));
    for (int64_t s = 1; s <= steps + 1; ++s) {
      const double t0 = now();
      const StepResult r = t.step(s, b);
      if (device.is_cuda()) torch::cuda::synchronize();
      if (s > 1) ms[run].push_back((now() - t0) * 1e3);  // step 1 untimed: allocations, set-up
      losses[run].push_back(r.loss);
      norms[run].push_back(r.grad_norm);
    }
  }
  const bool ok = losses[0] == losses[1] && norms[0] == norms[1];  // bit for bit; a NaN never equals
  std::printf("{\"impl\": \"xltune\", \"check\": \"deterministic: two runs bit-equal\", \"mode\": \"%s\", "
              "\"resolution\": %lld, \"batch\": %lld, \"checkpointing\": %s, \"steps\": %lld, \"ms\": %.2f, "
              "\"ms_second_run\": %.2f, \"placement\": \"%s\", \"ok\": %s}\n",
              lora ? "lora" : "full", static_cast<long long>(resolution), static_cast<long long>(batch),
              checkpointing ? "true" : "false", static_cast<long long>(steps + 1), median(ms[0]), median(ms[1]),
              placement.describe().c_str(), ok ? "true" : "false");
  std::fflush(stdout);
  return ok ? 0 : 1;
}

// The gradient path of the graph modes: none (one rank), or the bucketed reducer over one rank
// (graph-reduced), whose step is captured in two segments: over NCCL where the build has it and
// the device is a GPU, else the in-process communicator.
struct ReducerPath {
  std::unique_ptr<Communicator> comm;
  std::shared_ptr<GradientReducer> reducer;
};
ReducerPath reducer_path(bool bucketed, const at::Device& device) {
  ReducerPath path;
#ifdef XLTUNE_HAVE_NCCL
  if (bucketed && device.is_cuda()) path.comm = std::make_unique<NcclCommunicator>(0, 1, device, "");
#else
  (void)device;
#endif
  if (!path.comm) path.comm = std::make_unique<SingleProcessCommunicator>();
  if (!bucketed) {
    path.reducer = std::make_shared<AfterBackwardReducer>(*path.comm);
  } else {
    BucketedReducer::Options o;
    o.reduce_one_rank = true;
    path.reducer = std::make_shared<BucketedReducer>(*path.comm, o);
  }
  return path;
}

// The "graph", "graph-deterministic", "graph-reduced", "graph-accumulated" and "graph-bf16-state"
// modes (`check`; see the top of this file).
template <typename LoadModel>
int graph_check(LoadModel load_model, bool lora, bool checkpointing, const Placement& placement, int64_t resolution,
                int64_t batch, int64_t steps, const std::string& check) {
  constexpr double kGraphRelTolerance = 1e-3;
  const bool bit_equal = check != "graph", reduced = check == "graph-reduced";
  const bool accumulated = check == "graph-accumulated", bf16_state = check == "graph-bf16-state";
  const at::Device device = placement.device;
  const StepBatch first = bench::synthetic_batch(batch, resolution / 8, device);
  std::vector<StepBatch> b = {first};
  if (accumulated) {
    StepBatch second = first;
    for (auto& p : second.positions) p += batch;
    b.push_back(second);
  }
  const int64_t untimed = 1 + Trainer::kGraphWarmupSteps + 1;  // before the pivot, warm-up, capture
  std::vector<double> losses[2], ms[2];
  double peak_gib[2] = {0, 0}, ms_late[2] = {0, 0};
  int64_t replays = 0;
  for (int run = 0; run < 2; ++run) {
    SdxlModel m = load_model();
    const ReducerPath path = reducer_path(reduced, device);
    TrainerConfig c = bench::synthetic_config(lora, steps, checkpointing, placement);
    c.pivot_step = 1;
    c.max_train_steps = untimed + 2 * steps;
    c.adamw_kernel = AdamWKernel::kFused;
    if (bf16_state) c.optimizer_state_dtype = at::kBFloat16;
    c.step_graph = run == 1 && device.is_cuda() ? TrainerConfig::StepGraph::kCuda : TrainerConfig::StepGraph::kStatic;
    Trainer t(m, c, 0.13025, path.reducer);
    for (int64_t s = 1; s <= untimed + steps; ++s) {
      if (s == untimed + 1) reset_peak_memory(device);
      const double t0 = now();
      const StepResult r = t.step(s, b);
      if (device.is_cuda()) torch::cuda::synchronize();
      if (s > untimed) ms[run].push_back((now() - t0) * 1e3);
      losses[run].push_back(r.loss);
    }
    const double t0 = now();  // each step read once the next is queued: the device never waits for the host's read
    for (int64_t s = untimed + steps + 1; s <= c.max_train_steps; ++s) {
      t.issue(s, b);
      if (s > untimed + steps + 1) losses[run].push_back(t.collect().loss);
    }
    losses[run].push_back(t.collect().loss);
    if (device.is_cuda()) torch::cuda::synchronize();
    ms_late[run] = (now() - t0) * 1e3 / static_cast<double>(steps);
    peak_gib[run] = static_cast<double>(peak_memory_bytes(device)) / (1 << 30);
    if (run == 1) replays = t.graph_replays();
  }
  double worst_rel = 0;
  bool within = true;
  for (size_t s = 0; s < losses[0].size(); ++s) {
    const double a = losses[0][s], g = losses[1][s];
    const double diff = std::abs(a - g), scale = std::max(std::abs(a), std::abs(g));
    const double rel = diff == 0 ? 0.0 : (scale > 0 ? diff / scale : diff);
    if (!(rel <= worst_rel)) worst_rel = rel;  // a NaN sticks
    if (bit_equal ? !(a == g) : !(rel <= kGraphRelTolerance)) within = false;
  }
  const bool ok = within && replays == 2 * steps;  // kStatic counts the replays it stands in for
  char rel[32] = "null";
  if (std::isfinite(worst_rel)) std::snprintf(rel, sizeof rel, "%.3g", worst_rel);
  std::printf("{\"impl\": \"xltune\", \"check\": \"%s\", \"mode\": \"%s\", \"resolution\": %lld, \"batch\": %lld, "
              "\"checkpointing\": %s, \"steps\": %lld, \"ms_eager\": %.2f, \"ms_graph\": %.2f, "
              "\"eager_over_graph\": %.3f, \"ms_eager_read_late\": %.2f, \"ms_graph_read_late\": %.2f, "
              "\"peak_gib_eager\": %.3f, \"peak_gib_graph\": %.3f, \"replays\": %lld, "
              "\"max_rel_loss_diff\": %s, \"rel_tolerance\": %s, \"placement\": \"%s\", \"ok\": %s}\n",
              accumulated ? "graph-accumulated: two micro-batches and the update captured = eager, bit for bit"
              : bf16_state  ? "graph-bf16-state: bf16 moments, each replay's rounding key staged = eager, bit for bit"
              : reduced   ? "graph-reduced: two captured segments, all-reduce between = eager, bit for bit"
              : bit_equal ? "graph-deterministic: captured = eager, bit for bit"
                          : "graph: captured step vs eager",
              lora ? "lora" : "full", static_cast<long long>(resolution), static_cast<long long>(batch),
              checkpointing ? "true" : "false", static_cast<long long>(steps), median(ms[0]), median(ms[1]),
              median(ms[0]) / median(ms[1]), ms_late[0], ms_late[1], peak_gib[0], peak_gib[1], static_cast<long long>(replays), rel,
              bit_equal ? "0" : "0.001", placement.describe().c_str(), ok ? "true" : "false");
  std::fflush(stdout);
  return ok ? 0 : 1;
}

int run(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: %s MODEL_DIR|sdxl-base cpu|cuda lora|full RESOLUTION BATCH STEPS [checkpointing|plain] "
                 "[nccl|deterministic|graph|graph-deterministic|graph-reduced|graph-accumulated|graph-bf16-state]\n",
                 argv[0]);
    return 2;
  }
  const std::string model_arg = argv[1], mode = argv[3];
  const at::Device device(std::string(argv[2]) == "cuda" ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU));
  const int64_t resolution = std::stoll(argv[4]), batch = std::stoll(argv[5]), steps = std::stoll(argv[6]);
  const bool checkpointing = argc > 7 && std::string(argv[7]) == "checkpointing";
  const bool nccl = argc > 8 && std::string(argv[8]) == "nccl";
  const std::string check = argc > 8 ? argv[8] : "";
  const bool graph = check == "graph" || check == "graph-deterministic" || check == "graph-reduced" ||
                     check == "graph-accumulated" || check == "graph-bf16-state";
  const bool deterministic = check == "deterministic" || (graph && check != "graph");
  const bool lora = mode == "lora";
  if (deterministic) set_deterministic_environment();  // before anything starts CUDA or cuBLAS
  // As `xltune train` places the models (Note [One placement]).
  const Placement placement =
      placement_for(device, lora ? PlacementUse::kTrainLora : PlacementUse::kTrainFull, 0, deterministic);
  apply_placement(placement);
  const auto unet_o = placement.unet_options();
  const auto te_o = placement.frozen_options();
  auto load_model = [&] {
    at::manual_seed(0);  // the same random weights every time
    if (model_arg == "sdxl-base") return sdxl_base(unet_o, te_o);
    SdxlLoadOptions o;
    o.unet = unet_o, o.text_encoders = te_o, o.vae = te_o, o.with_vae = false;
    return load_sdxl(model_arg, o);
  };
  if (nccl) return nccl_check(load_model, lora, device, resolution, batch, steps);
  if (graph)
    return graph_check(load_model, lora, checkpointing, placement, resolution, batch, steps, check);
  if (deterministic) return determinism_check(load_model, lora, checkpointing, placement, resolution, batch, steps);
  SdxlModel m = load_model();
  const int64_t after_load = peak_memory_bytes(device);
  TrainerConfig c = bench::synthetic_config(lora, steps, checkpointing, placement);
  SingleProcessCommunicator comm;
  Trainer trainer(m, c, 0.13025, std::make_shared<AfterBackwardReducer>(comm));
  const StepBatch b = bench::synthetic_batch(batch, resolution / 8, device);
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  int64_t step = 0;
  PhaseClock clock(device.is_cuda());
  for (const char* phase : {"before_pivot", "after_pivot"}) {
    trainer.set_phase_listener(nullptr);
    trainer.step(++step, b);  // untimed: allocations, the text cache after the pivot
    sync();
    reset_peak_memory(device);
    clock.reset();
    trainer.set_phase_listener(&clock);
    std::vector<double> ms;
    for (int64_t i = 0; i < steps; ++i) {
      const double t0 = now();
      trainer.step(++step, b);
      sync();
      ms.push_back((now() - t0) * 1e3);
      clock.collect();
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    std::printf("{\"impl\": \"xltune\", \"model\": \"%s\", \"mode\": \"%s\", \"phase\": \"%s\", \"resolution\": %lld, "
                "\"batch\": %lld, \"checkpointing\": %s, \"ms\": %.2f, \"steps_per_s\": %.4f, \"peak_bytes\": %lld, "
                "\"after_load_bytes\": %lld, \"trainable\": %lld, \"phases\": %s}\n",
                model_arg.c_str(), mode.c_str(), phase, static_cast<long long>(resolution), static_cast<long long>(batch),
                checkpointing ? "true" : "false", median, 1e3 / median,
                static_cast<long long>(peak_memory_bytes(device)), static_cast<long long>(after_load),
                static_cast<long long>(trainer.trainable_parameter_count()), clock.json().c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace xltune

int main(int argc, char** argv) { return xltune::bench::main_of("xltune_bench_train", xltune::run, argc, argv); }
