#include "core/recompute.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/autograd.h>

#include "core/check.h"

namespace xltune {

namespace {

// The autocast state of the forward pass. Backward runs on autograd's own threads, whose
// thread-local autocast is off: the recompute must run under the state the forward ran
// under, or a bf16-autocast forward would be recomputed in fp32 (torch.utils.checkpoint saves
// and restores it the same way).
struct AutocastState {
  bool cuda = false, cpu = false;
  at::ScalarType cuda_dtype = at::kHalf, cpu_dtype = at::kBFloat16;
  static AutocastState current() {
    return {at::autocast::is_autocast_enabled(at::kCUDA), at::autocast::is_autocast_enabled(at::kCPU),
            at::autocast::get_autocast_dtype(at::kCUDA), at::autocast::get_autocast_dtype(at::kCPU)};
  }
  void apply() const {
    at::autocast::set_autocast_enabled(at::kCUDA, cuda);
    at::autocast::set_autocast_enabled(at::kCPU, cpu);
    at::autocast::set_autocast_dtype(at::kCUDA, cuda_dtype);
    at::autocast::set_autocast_dtype(at::kCPU, cpu_dtype);
  }
};

// Holds fn inside the autograd context (saved_data keeps IValues; a capsule carries any object).
struct FnHolder : torch::CustomClassHolder {
  FnHolder(TensorFn f, AutocastState a) : fn(std::move(f)), autocast(a) {}
  TensorFn fn;
  AutocastState autocast;
};

// The autograd node. Its tensor arguments are listed one by one: libtorch's Function sees
// tensors passed as separate arguments (a std::vector of them would be invisible to it).
struct RecomputeFunction : torch::autograd::Function<RecomputeFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const TensorFn& fn, const at::Tensor& a,
                            const at::Tensor& b, const at::Tensor& anchor) {
    ctx->saved_data["fn"] = c10::IValue::make_capsule(c10::make_intrusive<FnHolder>(fn, AutocastState::current()));
    ctx->save_for_backward({a, b});
    at::NoGradGuard no_grad;  // no graph, so no activations are kept
    return fn(a, b);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    auto holder = c10::static_intrusive_pointer_cast<FnHolder>(ctx->saved_data["fn"].toCapsule());
    torch::autograd::variable_list saved = ctx->get_saved_variables();
    std::vector<at::Tensor> detached;
    for (const auto& t : saved) {
      at::Tensor d = t.defined() ? t.detach() : t;
      if (d.defined()) d.requires_grad_(t.requires_grad());
      detached.push_back(d);
    }
    at::Tensor output;
    {
      at::AutoGradMode grad_on(true);
      const AutocastState outer = AutocastState::current();
      // No autocast cache in the recompute: its casts of the weights would stay in autocast's
      // process-wide cache after backward, and the next forward, after the optimizer has
      // changed the weights, would use them stale (Note [Gradient checkpointing]). The flag is
      // per thread, so the forward's own caching is untouched.
      const bool outer_cache = at::autocast::is_autocast_cache_enabled();
      holder->autocast.apply();
      at::autocast::set_autocast_cache_enabled(false);
      try {
        output = holder->fn(detached[0], detached[1]);
      } catch (...) {
        at::autocast::set_autocast_cache_enabled(outer_cache);
        outer.apply();
        throw;
      }
      at::autocast::set_autocast_cache_enabled(outer_cache);
      outer.apply();
    }
    if (output.requires_grad() && grad_outputs[0].defined()) torch::autograd::backward({output}, {grad_outputs[0]});
    auto grad_of = [](const at::Tensor& d) { return d.defined() && d.requires_grad() ? d.grad() : at::Tensor(); };
    // One gradient per argument of forward: fn, a, b, anchor.
    return {at::Tensor(), grad_of(detached[0]), grad_of(detached[1]), at::Tensor()};
  }
};

}  // namespace

at::Tensor recompute_in_backward(const TensorFn& fn, const at::Tensor& a, const at::Tensor& b) {
  if (!at::GradMode::is_enabled()) return fn(a, b);
  // An empty input that requires grad, so that the output takes part in the graph even when
  // no real input does (frozen base model, trainable LoRA weights inside fn): otherwise the
  // backward above would never run and those weights would get no gradient.
  at::Tensor anchor = at::empty({0}, a.options()).requires_grad_(true);
  return RecomputeFunction::apply(fn, a, b, anchor);
}

}  // namespace xltune
