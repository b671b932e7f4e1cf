// Ops and host synchronisations in one training step (issue 18, item 1): how much the host
// issues per step, counted on the CPU, so that the work of issue 18 can be measured without a GPU.
//
//   xltune_bench_step_ops [sdxl-base|MODEL_DIR] [cpu|cuda] [RESOLUTION] [BATCH] [CASES] [WARMUP] [KERNEL] [STATE]
//                         [FUSE] [GRAPH]
//
// Defaults: sdxl-base cpu 64 1 all 1 auto fp32 auto off. KERNEL: AdamW's, auto, foreach or fused. STATE:
// AdamW's moments, fp32 or bf16. FUSE: LoRA's shared down-projections (--lora_fused_projections),
// auto (on on a GPU), on or off. GRAPH: on runs the steps as --cuda_graph true does (Note [The
// step as a CUDA graph]): on CUDA with WARMUP >= 4 the counted step after the pivot is a replay,
// and the ops it counts are what the host still dispatches around it; on the CPU the same
// static-input step, run eagerly. sdxl-base: SDXL base 1.0's real UNet and both text
// encoders built from their configs with random weights (Note [Random model weights]); a
// MODEL_DIR (xltune init-model) is quicker for trying the bench itself. Op counts depend on the
// structure, not the resolution, so 64 px (8x8 latents) is enough. CASES: a comma list of
// lora_before_pivot (LoRA rank 32 + pivotal tuning while the token rows train: the encoders run
// with gradients), lora_after_pivot (text conditioning cached), full_before_pivot,
// full_after_pivot (full fine-tuning), or all, lora, full. Each case is the real Trainer
// (train/trainer.h) on a synthetic batch: WARMUP untimed steps, then one counted step.
//
// Why: on a GPU each dispatched op costs a few µs of host time (dispatcher, autograd, the
// launch), and a host synchronisation stops the host from running ahead of the GPU. The
// GPU-readiness review (../shared/reviews/2026-12-gpu-readiness.md §3) estimates ≈ 29,000
// launches and 7-9 syncs in one 1024² LoRA step: a host-bound step. Issue 18's goals, measured
// here: everything but the frozen UNet's own forward and backward in a LoRA step ≤ 3,000 ops;
// full fine-tuning's clipping and optimizer ≤ 100 ops; 0 host syncs between the forward and the
// optimizer step.
//
// How: a global RecordFunction callback (ATen/record_function.h) sees every dispatched op while
// the counted step runs, split by phase with the Trainer's StepPhaseListener (draws, text,
// forward, backward, clip, optimizer; "after" is what step() does after the optimizer: the token
// rows' rescale, zero_grad, loss.item(), x0.cpu()). Per phase:
//   ops        every aten:: op observed, nested ones included (a composite op and the ops it
//              calls all count);
//   top-level  aten:: ops at depth 0: called by the trainer's code or by an autograd node in
//              backward, not from inside another op (what the host dispatches); ops a CPU
//              kernel dispatches inside its parallel_for count in "ops" only;
//   leaf       aten:: ops that call no other op, less views, allocations and other
//              metadata-only ops: a proxy for kernel launches (the CPU's decompositions; a GPU's
//              differ in detail, e.g. convolution and attention);
//   nodes      autograd nodes evaluated (backward);
//   item()     calls of aten::_local_scalar_dense (what .item() dispatches): on a GPU, each one
//              on a device tensor is a device-to-host read that waits for the GPU; on the CPU
//              a kernel also reads its 0-dim tensor arguments so (the fused AdamW's step
//              counts, a multiplier), which a GPU's kernels read on the device;
//   host reads the item() calls the step's own code makes (aten::item at top level), not a
//              kernel's: what would wait for a GPU whatever the kernels are;
//   nonzero    nonzero, masked_select, unique (output size depends on data: a sync on a GPU);
//   syncs      what syncs on this device: item() and nonzero-like ops of non-CPU tensors,
//              device-to-host copies, blocking host-to-device copies (always 0 on a CPU run).
// The frozen UNet's own share: before the Trainer attaches anything, the UNet runs forward, the
// step's loss and backward alone on the same shapes, with the gradients rooted where the case's
// step roots them (before the pivot: the text conditioning; after it, LoRA: the noisy latents,
// which adds conv_in's and the first level's input gradients that a LoRA step does not compute;
// full fine-tuning: the trained parameters). "Beyond the frozen UNet" = the step's forward +
// backward less that: LoRA's ops, the noising and, before the pivot, the encoders' backward.
// "Everything else" = the whole step less that.
//
// Prints a table per case and one JSON line per case (ops counts of one step, for committing).
// Memory: sdxl-base in fp32 on the CPU holds ≈ 14 GB for the LoRA cases and ≈ 48 GB for full
// fine-tuning (the UNet, its gradients and AdamW's two moments).
#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "bench_util.h"
#include "core/check.h"
#include "core/placement.h"
#include "dist/communicator.h"
#include "dist/gradient_reducer.h"
#include "sdxl/random_model.h"
#include "sdxl/sdxl_model.h"
#include "train/autocast_scope.h"
#include "train/trainer.h"
#include "synthetic_step.h"

namespace xltune {
namespace {

// ---- Counting --------------------------------------------------------------------------------

struct Counts {
  int64_t ops = 0, top = 0, leaf = 0, nodes = 0, items = 0, host_reads = 0, nonzero = 0, syncs = 0;
  std::map<std::string, int64_t> top_names;  // top-level ops by name

  Counts& operator+=(const Counts& o) {
    ops += o.ops, top += o.top, leaf += o.leaf, nodes += o.nodes, items += o.items, nonzero += o.nonzero;
    host_reads += o.host_reads;
    syncs += o.syncs;
    for (const auto& [name, n] : o.top_names) top_names[name] += n;
    return *this;
  }
};

bool is_aten(const char* name) { return std::strncmp(name, "aten::", 6) == 0; }

// Ops that launch no kernel: views, allocations, metadata (counted as leaves otherwise).
bool metadata_only(const char* name) {
  static const std::set<std::string> kNames = {
      "aten::view", "aten::_unsafe_view", "aten::reshape", "aten::_reshape_alias", "aten::as_strided",
      "aten::permute", "aten::transpose", "aten::t", "aten::expand", "aten::expand_as", "aten::select",
      "aten::slice", "aten::unsqueeze", "aten::squeeze", "aten::detach", "aten::alias", "aten::empty",
      "aten::empty_strided", "aten::empty_like", "aten::narrow", "aten::split", "aten::split_with_sizes",
      "aten::unbind", "aten::chunk", "aten::unflatten", "aten::flatten", "aten::view_as", "aten::lift_fresh",
      "aten::to", "aten::contiguous", "aten::resize_", "aten::_local_scalar_dense", "aten::item",
      "aten::set_", "aten::resolve_conj", "aten::resolve_neg", "aten::detach_", "aten::requires_grad_",
      "aten::unsqueeze_", "aten::squeeze_", "aten::as_strided_", "aten::transpose_", "aten::t_",
      "aten::numpy_T", "aten::result_type", "aten::_has_compatible_shallow_copy_type"};
  return kNames.count(name) != 0;
}

bool nonzero_like(const char* name) {
  static const std::set<std::string> kNames = {"aten::nonzero", "aten::masked_select", "aten::_unique",
                                               "aten::_unique2", "aten::unique_dim", "aten::unique_consecutive",
                                               "aten::unique_dim_consecutive"};
  return kNames.count(name) != 0;
}

bool off_cpu(const c10::IValue& v) { return v.isTensor() && v.toTensor().defined() && !v.toTensor().is_cpu(); }
bool on_cpu(const c10::IValue& v) { return v.isTensor() && v.toTensor().defined() && v.toTensor().is_cpu(); }

// Whether the op waits for the device on this run: item() or a nonzero-like op of a device
// tensor, a device-to-host copy, or a blocking host-to-device copy (pageable memory).
bool device_sync(const at::RecordFunction& fn, const char* name) {
  const auto in = fn.inputs();
  if (in.empty()) return false;
  if (std::strcmp(name, "aten::_local_scalar_dense") == 0 || nonzero_like(name)) return off_cpu(in[0]);
  if (std::strcmp(name, "aten::copy_") == 0 && in.size() >= 2) {  // copy_(self = destination, src, non_blocking)
    const bool non_blocking = in.size() >= 3 && in[2].isBool() && in[2].toBool();
    if (on_cpu(in[0]) && off_cpu(in[1])) return true;  // D2H: the host waits for the data
    if (off_cpu(in[0]) && on_cpu(in[1]) && !non_blocking) return true;
  }
  return false;
}

// Counts the ops of the phase in progress; mark() closes it under the mark's name (the Trainer
// marks where each phase ends). One at a time: the RecordFunction callback is global.
class OpCounter : public StepPhaseListener {
 public:
  OpCounter() = default;
  OpCounter(const OpCounter&) = delete;
  OpCounter& operator=(const OpCounter&) = delete;
  ~OpCounter() override { stop(); }

  void start() {
    XLTUNE_CHECK(active_.load() == nullptr, "step_ops: one counter at a time");
    active_.store(this);
    handle_ = at::addGlobalCallback(at::RecordFunctionCallback(&on_start, &on_end)
                                        .needsInputs(true)
                                        .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION}));
  }
  void stop() {
    if (handle_ == at::INVALID_CALLBACK_HANDLE) return;
    at::removeCallback(handle_);
    handle_ = at::INVALID_CALLBACK_HANDLE;
    active_.store(nullptr);
  }

  void mark(const char* phase) override { close_phase(phase); }
  // The ops since the last mark, under `phase` ("begin" is dropped when empty: nothing runs
  // before the step's first mark but its checks).
  void close_phase(const std::string& phase) {
    std::lock_guard<std::mutex> lock(mutex_);
    Counts c = std::move(current_);
    current_ = Counts();
    if (phase == "begin" && c.ops == 0 && c.nodes == 0) return;
    for (auto& [name, counts] : phases_)
      if (name == phase) {
        counts += c;
        return;
      }
    phases_.emplace_back(phase, std::move(c));
  }
  // Closed phases, in the order they ended.
  const std::vector<std::pair<std::string, Counts>>& phases() const { return phases_; }

 private:
  static std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
    OpCounter* self = active_.load();
    if (self == nullptr) return nullptr;
    if (fn.scope() == at::RecordScope::BACKWARD_FUNCTION) {
      std::lock_guard<std::mutex> lock(self->mutex_);
      ++self->current_.nodes;
      return nullptr;
    }
    const char* name = fn.name();
    if (!is_aten(name)) return nullptr;  // e.g. "autograd::engine::evaluate_function: ..."
    if (at::in_parallel_region()) {  // inside a CPU kernel's parallel_for: part of that kernel
      std::lock_guard<std::mutex> lock(self->mutex_);
      ++self->current_.ops;
      return nullptr;
    }
    if (!has_child_.empty()) has_child_.back() = true;
    const bool top = has_child_.empty();
    has_child_.push_back(false);
    const bool sync = device_sync(fn, name);
    std::lock_guard<std::mutex> lock(self->mutex_);
    Counts& c = self->current_;
    ++c.ops;
    if (top) ++c.top, ++c.top_names[name];
    if (std::strcmp(name, "aten::_local_scalar_dense") == 0) ++c.items;
    if (top && (std::strcmp(name, "aten::item") == 0 || std::strcmp(name, "aten::_local_scalar_dense") == 0))
      ++c.host_reads;
    if (nonzero_like(name)) ++c.nonzero;
    if (sync) ++c.syncs;
    return nullptr;
  }

  static void on_end(const at::RecordFunction& fn, at::ObserverContext* /*unused*/) {
    if (fn.scope() != at::RecordScope::FUNCTION || !is_aten(fn.name()) || at::in_parallel_region() ||
        has_child_.empty())
      return;
    const bool leaf = !has_child_.back();
    has_child_.pop_back();
    OpCounter* self = active_.load();
    if (self == nullptr || !leaf || metadata_only(fn.name())) return;
    std::lock_guard<std::mutex> lock(self->mutex_);
    ++self->current_.leaf;
  }

  static std::atomic<OpCounter*> active_;
  // Per thread (autograd may run backward on other threads): for each aten op in progress,
  // whether it has called another; empty at depth 0.
  static thread_local std::vector<bool> has_child_;
  at::CallbackHandle handle_ = at::INVALID_CALLBACK_HANDLE;
  std::mutex mutex_;
  Counts current_;
  std::vector<std::pair<std::string, Counts>> phases_;
};

std::atomic<OpCounter*> OpCounter::active_{nullptr};
thread_local std::vector<bool> OpCounter::has_child_;

// ---- Model, batch, trainer -------------------------------------------------------------------

struct Options {
  std::string model = "sdxl-base";
  at::Device device = at::Device(at::kCPU);
  int64_t resolution = 64, batch = 1, warmup = 1;
  std::set<std::string> cases;
  std::string kernel = "auto";  // AdamW's: auto (fused on a GPU, foreach on the CPU), foreach, fused
  std::string state = "fp32";   // AdamW's moments: fp32 or bf16 (stochastic rounding)
  std::string fuse = "auto";    // LoRA's shared down-projections: auto (on on a GPU), on, off
  std::string graph = "off";    // Note [The step as a CUDA graph]: on (CUDA: captured; CPU: static, run eagerly), off
};

// SDXL base 1.0, random weights: the real architecture.
SdxlModel sdxl_base(const at::TensorOptions& unet_o, const at::TensorOptions& te_o) {
  SdxlModel m = bench::sdxl_base_shapes(unet_o, te_o);
  randomize_module(*m.unet, "unet", 0);
  randomize_module(*m.te1, "text_encoder", 0);
  randomize_module(*m.te2, "text_encoder_2", 0);
  return m;
}

SdxlModel load_model(const Options& o, const Placement& placement) {
  at::manual_seed(0);
  if (o.model == "sdxl-base") return sdxl_base(placement.unet_options(), placement.frozen_options());
  SdxlLoadOptions lo;
  lo.unet = placement.unet_options(), lo.text_encoders = placement.frozen_options(), lo.with_vae = false;
  return load_sdxl(o.model, lo);
}

// ---- The frozen UNet alone ------------------------------------------------------------------

enum class Roots { kConditioning, kLatents, kParameters, kParametersAndConditioning };

const char* roots_name(Roots r) {
  switch (r) {
    case Roots::kConditioning: return "context, pooled";
    case Roots::kLatents: return "noisy latents";
    case Roots::kParameters: return "trained UNet parameters";
    case Roots::kParametersAndConditioning: return "trained UNet parameters, context, pooled";
  }
  return "";
}

// Every UNet parameter frozen (modules register theirs requiring gradients), or the ones full
// fine-tuning trains trainable; gradients cleared.
void set_unet_trainable(SdxlModel& m, bool on) {
  for (const auto& item : m.unet->named_parameters(/*recurse=*/true)) {
    at::Tensor p = item.value();
    p.mutable_grad() = at::Tensor();
    p.requires_grad_(on && Trainer::full_finetune_trains(item.key()));
  }
}

// The UNet's forward, the step's loss (masked MSE) and backward on the step's shapes, before the
// Trainer attaches anything: one untimed run, then one counted. Conditioning from the encoders
// (ids of the new tokens replaced: they do not exist yet), without gradients.
Counts unet_alone(SdxlModel& m, const StepBatch& batch, Roots roots, bool autocast_bf16) {
  at::Tensor context, pooled;
  {
    at::NoGradGuard no_grad;
    ClipTextOutput a = m.te1->forward(batch.input_ids_1.clamp_max(m.te1->token_embedding->base_count() - 1));
    ClipTextOutput b = m.te2->forward(batch.input_ids_2.clamp_max(m.te2->token_embedding->base_count() - 1));
    context = at::cat({a.penultimate, b.penultimate}, -1);
    pooled = b.text_embeds;
  }
  const bool params = roots == Roots::kParameters || roots == Roots::kParametersAndConditioning;
  const bool conditioning = roots == Roots::kConditioning || roots == Roots::kParametersAndConditioning;
  if (conditioning) context.requires_grad_(true), pooled.requires_grad_(true);
  at::Tensor x_t = at::randn_like(batch.latent_mean), target = at::randn_like(batch.latent_mean);
  if (roots == Roots::kLatents) x_t.requires_grad_(true);
  const at::Tensor t = at::full({batch.latent_mean.size(0)}, 500, at::TensorOptions().dtype(at::kLong).device(x_t.device()));
  const at::ScalarType dt = m.unet->conv_in->weight.scalar_type();
  OpCounter counter;
  for (int run = 0; run < 2; ++run) {
    set_unet_trainable(m, params);  // clears the gradients: each run starts as a step does
    if (run == 1) counter.start();
    at::Tensor pred;
    {
      AutocastScope autocast(autocast_bf16);  // as the Trainer's forward (full fine-tuning on a GPU)
      pred = m.unet->forward(x_t.to(dt), t, context.to(dt), pooled.to(dt), batch.add_time_ids.to(dt));
    }
    at::Tensor loss = ((pred.to(at::kFloat) - target).pow(2) * batch.mask).mean();
    loss.backward();
    if (run == 1) counter.close_phase("unet"), counter.stop();
  }
  set_unet_trainable(m, false);
  return counter.phases().at(0).second;
}

// ---- Cases -----------------------------------------------------------------------------------

struct CaseResult {
  std::string name;
  int64_t step = 0;
  std::vector<std::pair<std::string, Counts>> phases;
  Counts unet;  // the frozen UNet alone
  Roots roots = Roots::kConditioning;
};

std::vector<std::pair<std::string, Counts>> count_step(Trainer& trainer, int64_t step, const StepBatch& batch) {
  OpCounter counter;
  trainer.set_phase_listener(&counter);
  counter.start();
  trainer.step(step, batch);
  counter.close_phase("after");
  counter.stop();
  trainer.set_phase_listener(nullptr);
  return counter.phases();
}

std::vector<CaseResult> run_mode(const Options& o, bool lora) {
  const std::string mode = lora ? "lora" : "full";
  const bool before = o.cases.count(mode + "_before_pivot") != 0, after = o.cases.count(mode + "_after_pivot") != 0;
  if (!before && !after) return {};
  const Placement placement = placement_for(o.device, lora ? PlacementUse::kTrainLora : PlacementUse::kTrainFull);
  std::fprintf(stderr, "step_ops: %s: building the model (%s, %s)\n", mode.c_str(), o.model.c_str(),
               placement.describe().c_str());
  SdxlModel m = load_model(o, placement);
  const StepBatch batch = bench::synthetic_batch(o.batch, o.resolution / 8, o.device);
  CaseResult r_before{mode + "_before_pivot", o.warmup + 1, {}, {}, lora ? Roots::kConditioning : Roots::kParametersAndConditioning};
  CaseResult r_after{mode + "_after_pivot", 2 * o.warmup + 2, {}, {}, lora ? Roots::kLatents : Roots::kParameters};
  std::fprintf(stderr, "step_ops: %s: the frozen UNet alone\n", mode.c_str());
  if (before) r_before.unet = unet_alone(m, batch, r_before.roots, placement.autocast_bf16);
  if (after) r_after.unet = unet_alone(m, batch, r_after.roots, placement.autocast_bf16);
  SingleProcessCommunicator comm;
  // Steps 1..warmup before the pivot, warmup + 1 counted; then warmup more (the first fills the
  // text cache) and one counted after it.
  TrainerConfig config = bench::synthetic_config(lora, o.warmup, false, placement);
  if (o.kernel != "auto") config.adamw_kernel = o.kernel == "fused" ? AdamWKernel::kFused : AdamWKernel::kForeach;
  if (o.state == "bf16") config.optimizer_state_dtype = at::kBFloat16;
  if (o.fuse != "auto") config.lora_fused_projections = o.fuse == "on";
  if (o.graph == "on")
    config.step_graph = o.device.is_cuda() ? TrainerConfig::StepGraph::kCuda : TrainerConfig::StepGraph::kStatic;
  Trainer trainer(m, config, 0.13025, std::make_shared<AfterBackwardReducer>(comm));
  std::vector<CaseResult> out;
  std::fprintf(stderr, "step_ops: %s: steps\n", mode.c_str());
  if (before) {
    for (int64_t s = 1; s <= o.warmup; ++s) trainer.step(s, batch);
    r_before.phases = count_step(trainer, r_before.step, batch);
    out.push_back(std::move(r_before));
  }
  if (after) {
    for (int64_t s = o.warmup + 2; s < r_after.step; ++s) trainer.step(s, batch);
    r_after.phases = count_step(trainer, r_after.step, batch);
    out.push_back(std::move(r_after));
  }
  return out;
}

// ---- Output ----------------------------------------------------------------------------------

Counts sum_of(const CaseResult& r, const std::set<std::string>& phases) {
  Counts c;
  for (const auto& [name, counts] : r.phases)
    if (phases.empty() || phases.count(name)) c += counts;
  return c;
}

const std::set<std::string> kOutside = {"begin", "draws", "text", "clip", "optimizer", "after"};
const std::set<std::string> kForwardBackward = {"forward", "backward"};
const std::set<std::string> kForwardToOptimizer = {"forward", "backward", "clip", "optimizer"};
const std::set<std::string> kClipOptimizer = {"clip", "optimizer"};

std::string most_frequent(const Counts& c, size_t n) {
  std::vector<std::pair<int64_t, std::string>> v;
  for (const auto& [name, count] : c.top_names) v.emplace_back(-count, name);
  std::sort(v.begin(), v.end());
  std::ostringstream s;
  for (size_t i = 0; i < v.size() && i < n; ++i) s << (i ? ", " : "") << v[i].second.substr(6) << " " << -v[i].first;
  return s.str();
}

void print_table(const CaseResult& r, const Options& o) {
  std::printf("\n== %s: %s, %s, %lld px (%lld² latents), batch %lld; step %lld after %lld warm-up\n", r.name.c_str(),
              o.model.c_str(), o.device.str().c_str(), static_cast<long long>(o.resolution),
              static_cast<long long>(o.resolution / 8), static_cast<long long>(o.batch), static_cast<long long>(r.step),
              static_cast<long long>(o.warmup));
  std::printf("%-10s %9s %10s %8s %7s %7s %10s %8s %6s\n", "phase", "ops", "top-level", "leaf", "nodes", "item()",
              "host reads", "nonzero", "syncs");
  auto row = [](const std::string& name, const Counts& c) {
    std::printf("%-10s %9lld %10lld %8lld %7lld %7lld %10lld %8lld %6lld\n", name.c_str(),
                static_cast<long long>(c.ops), static_cast<long long>(c.top), static_cast<long long>(c.leaf),
                static_cast<long long>(c.nodes), static_cast<long long>(c.items), static_cast<long long>(c.host_reads),
                static_cast<long long>(c.nonzero), static_cast<long long>(c.syncs));
  };
  for (const auto& [name, c] : r.phases) row(name, c);
  const Counts total = sum_of(r, {}), outside = sum_of(r, kOutside), fb = sum_of(r, kForwardBackward);
  row("total", total);
  auto line = [](const char* what, int64_t top, int64_t all, int64_t leaf, const char* goal) {
    std::printf("%-58s top-level %7lld  ops %7lld  leaf %7lld%s\n", what, static_cast<long long>(top),
                static_cast<long long>(all), static_cast<long long>(leaf), goal);
  };
  line("outside forward+backward (draws, text, clip, optimizer, after)", outside.top, outside.ops, outside.leaf, "");
  std::printf("frozen UNet alone, forward+loss+backward (grad roots: %s):\n", roots_name(r.roots));
  line("  ", r.unet.top, r.unet.ops, r.unet.leaf, "");
  line("forward+backward beyond the frozen UNet", fb.top - r.unet.top, fb.ops - r.unet.ops, fb.leaf - r.unet.leaf,
       r.name.rfind("lora", 0) == 0 ? "  (LoRA, noising; before the pivot the encoders' backward)" : "");
  line("everything else (the step less the frozen UNet)", total.top - r.unet.top, total.ops - r.unet.ops,
       total.leaf - r.unet.leaf, r.name.rfind("lora", 0) == 0 ? "  goal top-level <= 3,000" : "");
  const Counts co = sum_of(r, kClipOptimizer), fo = sum_of(r, kForwardToOptimizer);
  line("clip+optimizer", co.top, co.ops, co.leaf, r.name.rfind("full", 0) == 0 ? "  goal <= 100" : "");
  std::printf("item() calls from forward to the optimizer step: %lld, of which the step's own host reads: %lld (on a "
              "GPU each is a host sync; goal 0; the rest are CPU kernels reading 0-dim CPU tensors); in the whole "
              "step: %lld; syncs seen on %s: %lld\n",
              static_cast<long long>(fo.items), static_cast<long long>(fo.host_reads),
              static_cast<long long>(total.items), o.device.str().c_str(), static_cast<long long>(total.syncs));
  std::printf("most frequent top-level ops:\n");
  for (const auto& [name, c] : r.phases) std::printf("  %-9s %s\n", name.c_str(), most_frequent(c, 8).c_str());
}

std::string counts_json(const Counts& c) {
  char b[320];
  std::snprintf(b, sizeof b,
                "{\"ops\": %lld, \"top_level\": %lld, \"leaf\": %lld, \"autograd_nodes\": %lld, \"item\": %lld, "
                "\"host_reads\": %lld, \"nonzero\": %lld, \"syncs\": %lld}",
                static_cast<long long>(c.ops), static_cast<long long>(c.top), static_cast<long long>(c.leaf),
                static_cast<long long>(c.nodes), static_cast<long long>(c.items), static_cast<long long>(c.host_reads),
                static_cast<long long>(c.nonzero), static_cast<long long>(c.syncs));
  return b;
}

std::string difference_json(const Counts& a, const Counts& b) {
  Counts d;
  d.ops = a.ops - b.ops, d.top = a.top - b.top, d.leaf = a.leaf - b.leaf, d.nodes = a.nodes - b.nodes;
  d.items = a.items - b.items, d.nonzero = a.nonzero - b.nonzero, d.syncs = a.syncs - b.syncs;
  d.host_reads = a.host_reads - b.host_reads;
  return counts_json(d);
}

// Whether the LoRA cases group their adapters (FUSE; auto as synthetic_config resolves it).
bool lora_fused(const Options& o) { return o.fuse == "auto" ? o.device.is_cuda() : o.fuse == "on"; }

void print_json(const CaseResult& r, const Options& o) {
  const Counts total = sum_of(r, {});
  std::ostringstream s;
  s << "{\"case\": \"" << r.name << "\", \"model\": \"" << o.model << "\", \"device\": \"" << o.device.str()
    << "\", \"resolution\": " << o.resolution << ", \"batch\": " << o.batch << ", \"adamw_kernel\": \"" << o.kernel
    << "\", \"state_dtype\": \"" << o.state << "\", \"lora_fused_projections\": "
    << (lora_fused(o) ? "true" : "false") << ", \"step_graph\": \"" << o.graph << "\""
    << ", \"step\": " << r.step
    << ", \"ops_total\": " << total.ops << ", \"ops_top_level\": " << total.top << ", \"ops_leaf\": " << total.leaf
    << ", \"by_phase\": {";
  for (size_t i = 0; i < r.phases.size(); ++i)
    s << (i ? ", " : "") << "\"" << r.phases[i].first << "\": " << counts_json(r.phases[i].second);
  s << "}, \"item_calls\": {";
  for (size_t i = 0; i < r.phases.size(); ++i)
    s << (i ? ", " : "") << "\"" << r.phases[i].first << "\": " << r.phases[i].second.items;
  s << "}, \"outside_forward_backward\": " << counts_json(sum_of(r, kOutside))
    << ", \"frozen_unet\": " << counts_json(r.unet) << ", \"frozen_unet_roots\": \"" << roots_name(r.roots)
    << "\", \"beyond_frozen_unet\": " << difference_json(sum_of(r, kForwardBackward), r.unet)
    << ", \"everything_else\": " << difference_json(total, r.unet)
    << ", \"clip_optimizer\": " << counts_json(sum_of(r, kClipOptimizer))
    << ", \"item_calls_forward_to_optimizer\": " << sum_of(r, kForwardToOptimizer).items
    << ", \"host_reads_forward_to_optimizer\": " << sum_of(r, kForwardToOptimizer).host_reads << "}";
  std::printf("%s\n", s.str().c_str());
}

// ---- Main ------------------------------------------------------------------------------------

Options parse(int argc, char** argv) {
  Options o;
  if (argc > 1) o.model = argv[1];
  if (argc > 2) o.device = std::string(argv[2]) == "cuda" ? at::Device(at::kCUDA, 0) : at::Device(argv[2]);
  if (argc > 3) o.resolution = std::stoll(argv[3]);
  if (argc > 4) o.batch = std::stoll(argv[4]);
  const std::string cases = argc > 5 ? argv[5] : "all";
  if (argc > 6) o.warmup = std::stoll(argv[6]);
  if (argc > 7) o.kernel = argv[7];
  if (argc > 8) o.state = argv[8];
  if (argc > 9) o.fuse = argv[9];
  if (argc > 10) o.graph = argv[10];
  XLTUNE_CHECK(o.graph == "on" || o.graph == "off", "step_ops: GRAPH must be on or off, got '", o.graph, "'");
  XLTUNE_CHECK(o.fuse == "auto" || o.fuse == "on" || o.fuse == "off", "step_ops: FUSE must be auto, on or off, got '",
               o.fuse, "'");
  XLTUNE_CHECK(o.state == "fp32" || o.state == "bf16", "step_ops: STATE must be fp32 or bf16, got '", o.state, "'");
  XLTUNE_CHECK(o.kernel == "auto" || o.kernel == "foreach" || o.kernel == "fused",
               "step_ops: KERNEL must be auto, foreach or fused, got '", o.kernel, "'");
  XLTUNE_CHECK(o.resolution >= 8 && o.resolution % 8 == 0, "step_ops: RESOLUTION must be a multiple of 8, got ",
               o.resolution);
  XLTUNE_CHECK(o.batch >= 1 && o.warmup >= 1, "step_ops: BATCH and WARMUP must be at least 1");
  const std::vector<std::string> known = {"lora_before_pivot", "lora_after_pivot", "full_before_pivot",
                                          "full_after_pivot"};
  std::stringstream list(cases);
  for (std::string item; std::getline(list, item, ',');) {
    for (const std::string& k : known)
      if (item == "all" || item == k || k.rfind(item + "_", 0) == 0) o.cases.insert(k);
    XLTUNE_CHECK(item == "all" || item == "lora" || item == "full" ||
                     std::find(known.begin(), known.end(), item) != known.end(),
                 "step_ops: unknown case '", item, "' (lora_before_pivot, lora_after_pivot, full_before_pivot, "
                 "full_after_pivot, lora, full, all)");
  }
  return o;
}

int run(int argc, char** argv) {
  if (argc > 1 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help")) {
    std::printf("usage: %s [sdxl-base|MODEL_DIR] [cpu|cuda] [RESOLUTION] [BATCH] [CASES] [WARMUP] [KERNEL] [STATE] [FUSE] "
                "[GRAPH]\n",
                argv[0]);
    return 0;
  }
  const Options o = parse(argc, argv);
  apply_placement(placement_for(o.device, PlacementUse::kTrainLora));  // threads, TF32: once
  std::vector<CaseResult> results;
  for (bool lora : {true, false}) {
    for (auto& r : run_mode(o, lora)) {  // each mode's model is freed before the next is built
      print_table(r, o);
      print_json(r, o);
      std::fflush(stdout);
      results.push_back(std::move(r));
    }
  }
  return results.empty() ? 2 : 0;
}

}  // namespace
}  // namespace xltune

int main(int argc, char** argv) { return xltune::bench::main_of("xltune_bench_step_ops", xltune::run, argc, argv); }
