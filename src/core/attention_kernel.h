// Scaled-dot-product attention for every model (the UNet's transformer blocks, the CLIP text
// encoders), with the kernel libtorch picks for each shape logged once, and --attention to
// force one.
//
// Note [Attention kernels]
// at::scaled_dot_product_attention picks a kernel per call from the inputs' device, dtype,
// shapes and whether they need gradients: flash attention, memory-efficient attention, cuDNN's
// or the math fallback on a GPU (in libtorch's priority order, the first whose constraints hold);
// flash or math on the CPU. Which one runs decides the step's speed and memory at 1024 px (the
// math kernel holds a 4096 x 4096 score matrix per head), and it may differ between GPUs and
// libtorch versions, so a run says what it got: the first call of each shape logs the choice
// ("attention [2, 10, 4096, 64] x [2, 10, 77, 64] bf16 grad on cuda:0: flash"), and
// attention_choices() lists them (the benches print them beside their timings).
// --attention names one kernel instead (the placement's attention_kernel, set process-wide by
// apply_placement): libtorch's switches then enable that kernel alone, and a shape it cannot run
// is an Error naming the option, the shape and the kernel, at the first call (libtorch would
// otherwise fall back or abort with "No available kernel"). auto (the default) enables all of
// them and lets libtorch choose. Forcing one is for measuring (bench/gpu/run) and for working
// around a kernel's bug; the kernels agree to rounding, not to the bit (the replay's parity is
// checked with auto).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace xltune {

enum class AttentionKernel { kAuto, kFlash, kEfficient, kCudnn, kMath };

// "auto", "flash", "efficient", "cudnn", "math".
const char* attention_kernel_name(AttentionKernel kernel);
// The --attention names and their kernels, for option tables.
std::vector<std::pair<std::string, AttentionKernel>> attention_kernel_choices();

// libtorch's process-wide SDPA switches set to `kernel` (auto: all on), and remembered for the
// errors of attention(). apply_placement calls it.
void set_attention_kernel(AttentionKernel kernel);
AttentionKernel attention_kernel();

// at::scaled_dot_product_attention(q, k, v) (no mask, no dropout; [b, heads, n, d]; causal for
// CLIP's text encoders), after logging the kernel of a new shape (Note [Attention kernels]).
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool is_causal = false);

// One line per shape attention() has seen in this process, in the order first seen:
// "[2, 10, 4096, 64] x [2, 10, 77, 64] bf16 grad on cuda:0: flash" (" causal" after the dtype
// for a causal mask).
std::vector<std::string> attention_choices();
// Forgets them (tests; a bench between cases), so that the next calls log again.
void clear_attention_choices();

}  // namespace xltune
