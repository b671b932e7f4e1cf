#include "core/attention_kernel.h"

#include <ATen/Context.h>
#include <ATen/SDPBackend.h>
#include <ATen/ops/_fused_sdp_choice.h>
#include <ATen/ops/scaled_dot_product_attention.h>

#include <atomic>
#include <map>
#include <mutex>
#include <tuple>

#include "core/check.h"
#include "core/log.h"

namespace xltune {

namespace {

std::atomic<AttentionKernel> g_kernel{AttentionKernel::kAuto};

// What decides libtorch's choice: the device, the dtype, the shapes, whether the inputs need
// gradients (some kernels have no backward for some shapes), and the switches (one per process).
using ShapeKey = std::tuple<int, int, int, std::vector<int64_t>, std::vector<int64_t>, bool, bool, int>;

struct Choices {
  std::mutex mutex;
  std::map<ShapeKey, at::SDPBackend> by_shape;
  std::vector<std::string> lines;
};
Choices& choices() {
  static Choices c;
  return c;
}

const char* backend_name(at::SDPBackend b) {
  switch (b) {
    case at::SDPBackend::math: return "math";
    case at::SDPBackend::flash_attention: return "flash";
    case at::SDPBackend::efficient_attention: return "efficient";
    case at::SDPBackend::cudnn_attention: return "cudnn";
    case at::SDPBackend::overrideable: return "overrideable";
    default: return "none";
  }
}

std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "fp32";
    case at::kBFloat16: return "bf16";
    case at::kHalf: return "fp16";
    case at::kDouble: return "fp64";
    default: return c10::toString(t);
  }
}

std::string describe_shape(const at::Tensor& q, const at::Tensor& k, bool grad, bool is_causal) {
  return xltune::str(q.sizes(), " x ", k.sizes(), " ", dtype_name(q.scalar_type()), is_causal ? " causal" : "",
             grad ? " grad" : "", " on ", q.device().str());
}

}  // namespace

const char* attention_kernel_name(AttentionKernel kernel) {
  switch (kernel) {
    case AttentionKernel::kAuto: return "auto";
    case AttentionKernel::kFlash: return "flash";
    case AttentionKernel::kEfficient: return "efficient";
    case AttentionKernel::kCudnn: return "cudnn";
    case AttentionKernel::kMath: return "math";
  }
  return "auto";
}

std::vector<std::pair<std::string, AttentionKernel>> attention_kernel_choices() {
  std::vector<std::pair<std::string, AttentionKernel>> out;
  for (AttentionKernel k : {AttentionKernel::kAuto, AttentionKernel::kFlash, AttentionKernel::kEfficient,
                            AttentionKernel::kCudnn, AttentionKernel::kMath})
    out.emplace_back(attention_kernel_name(k), k);
  return out;
}

void set_attention_kernel(AttentionKernel kernel) {
  const bool all = kernel == AttentionKernel::kAuto;
  at::Context& ctx = at::globalContext();
  // Each switch only when it changes: ranks as threads apply their placements at once.
  const auto set = [](bool now, bool wanted, auto setter) {
    if (now != wanted) setter(wanted);
  };
  set(ctx.userEnabledFlashSDP(), all || kernel == AttentionKernel::kFlash, [&](bool e) { ctx.setSDPUseFlash(e); });
  set(ctx.userEnabledMemEfficientSDP(), all || kernel == AttentionKernel::kEfficient,
      [&](bool e) { ctx.setSDPUseMemEfficient(e); });
  set(ctx.userEnabledCuDNNSDP(), all || kernel == AttentionKernel::kCudnn, [&](bool e) { ctx.setSDPUseCuDNN(e); });
  set(ctx.userEnabledMathSDP(), all || kernel == AttentionKernel::kMath, [&](bool e) { ctx.setSDPUseMath(e); });
  if (g_kernel.exchange(kernel) != kernel) clear_attention_choices();  // the choices were the old switches'
}

AttentionKernel attention_kernel() { return g_kernel.load(); }

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool is_causal) {
  const bool grad = at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  ShapeKey key{static_cast<int>(q.device().type()), q.device().index(), static_cast<int>(q.scalar_type()),
               q.sizes().vec(),  k.sizes().vec(),   grad,
               is_causal,        static_cast<int>(g_kernel.load())};
  Choices& c = choices();
  bool known;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    known = c.by_shape.count(key) != 0;
  }
  if (!known) {
    // libtorch's own choice function, which scaled_dot_product_attention calls (a CPU or CUDA
    // kernel of the dispatcher); "none" means no enabled kernel can run the shape.
    // When the kernels enabled all fail their constraints, it returns "error" (the CPU's) or
    // throws "No available kernel" after warning why (the CUDA one's).
    const AttentionKernel forced = g_kernel.load();
    const std::string shape = describe_shape(q, k, grad, is_causal);
    at::SDPBackend backend = at::SDPBackend::error;
    std::string why;
    try {
      backend = static_cast<at::SDPBackend>(at::_fused_sdp_choice(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0, is_causal));
    } catch (const c10::Error& e) {
      const std::string message = e.what_without_backtrace();
      why = xltune::str(" (libtorch: ", message.substr(0, message.find('\n')), ")");
    }
    XLTUNE_CHECK(backend != at::SDPBackend::error, "--attention ", attention_kernel_name(forced),
                 ": no enabled attention kernel runs ", shape,
                 forced == AttentionKernel::kAuto ? "" : "; choose another kernel, or auto", why);
    const std::string line = xltune::str(shape, ": ", backend_name(backend));
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.by_shape.emplace(key, backend).second) {
      c.lines.push_back(line);
      log_info("attention ", line);
    }
  }
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0, is_causal);
}

std::vector<std::string> attention_choices() {
  Choices& c = choices();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.lines;
}

void clear_attention_choices() {
  Choices& c = choices();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.by_shape.clear();
  c.lines.clear();
}

}  // namespace xltune
