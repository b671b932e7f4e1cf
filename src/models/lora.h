// LoRA (Hu et al. 2021) on the UNet's attention projections, as the reference trainer and
// diffusers' SDXL DreamBooth script place it: to_q, to_k, to_v and to_out.0 of every attn1
// and attn2.
//
// Note [LoRA in Attention]
// An adapter is an optional member of AttentionImpl (lora_q, lora_k, lora_v, lora_out) that
// forward() adds to the projection it belongs to:
//     y = W x + (alpha / rank) * up(down(x))          down = A [rank, in], up = B [out, rank]
// It is not a registered child module: the UNet's state dict stays exactly diffusers' (loading,
// inspect and full fine-tuning never see LoRA tensors), and the adapters are owned and named by
// UNetLora, which the optimizer, the gradient reducer and the exporters go through. A and B
// are fp32 whatever the UNet's dtype (bf16 on a GPU): the input is cast to fp32 for the
// adapter and the adapter's output back to the UNet's dtype, as diffusers' LoRA layers do.
//
// Note [LoRA's product in bf16]
// On a GPU that fp32 product costs twice: each adapter's input is copied to fp32 (and that copy
// kept for backward: about 1.7 GB at 1024² on SDXL), and its GEMMs run in fp32, far below the
// tensor cores' bf16 rate. With a product dtype (LoraAdapter::product, --lora_product_dtype;
// auto: bf16 on a GPU whose UNet is bf16, A's dtype on the CPU, where the replay against
// diffusers + peft stays exact) the fp32 masters A and B are cast to it in the forward (they are
// small: rank x width), the product runs on the input as it is, and the gradients of A and B come
// back to fp32 for AdamW: the mixed precision of autocast, which diffusers' scripts train LoRA
// under. The values differ from the fp32 product by bf16's rounding (tests/models/lora_test.cc).
//
// Note [LoRA's own backward]
// Left to autograd, y + scale * up(down(x)) records seven nodes per adapter (the casts, each
// linear's reshape, mm and transposes, the scale, the add), and SDXL has 560 adapters: about
// 13,000 ops a step beyond the frozen UNet, each a few µs of host time on a GPU (issue 18). One
// autograd::Function per adapter does the same arithmetic with a backward written out: the
// gradient of B as x^T g (as MmBackward computes it), then of h = down(x), then of A and of x,
// each an mm on 2-D views, x's skipped when x needs none. The forward is the composition's ops
// unchanged, and the backward calls the kernels autograd would call with the same operands, so
// values and gradients are the same bits (tests/models/lora_test.cc checks it).
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

namespace xltune {

class UNetImpl;

struct LoraAdapter {
  at::Tensor down;  // A [rank, in]
  at::Tensor up;    // B [out, rank]
  double scale = 1.0;  // alpha / rank
  // The dtype the product runs in (Note [LoRA's product in bf16]); Undefined: A's.
  at::ScalarType product = at::ScalarType::Undefined;
  at::ScalarType product_dtype() const { return product == at::ScalarType::Undefined ? down.scalar_type() : product; }
  // scale * up(down(x)), in x's dtype.
  at::Tensor delta(const at::Tensor& x) const;
  // y + delta(x), the adapted projection's output from the frozen one's (y = W x + b). While
  // gradients are recorded it is one autograd node with its own backward (Note [LoRA's own
  // backward]); the values and gradients are those of the composition, bit for bit.
  at::Tensor add_to(const at::Tensor& y, const at::Tensor& x) const;
};

// Note [LoRA's shared down-projection]
// The projections of one input (attn1's to_q, to_k and to_v read the same x; attn2's to_k and
// to_v the same context) can take their down-projections as one GEMM: x cat(A_q, A_k, A_v)^T,
// then each up-projection on its slice, and in backward one GEMM for the gradients of all the
// A's and one for x's (instead of one per adapter and two additions). One autograd node for the
// group: about 11 fewer top-level ops per transformer block, measured on SDXL base (issue 18,
// bench/figures/step_ops.md), and GEMMs two or three times wider. The
// sums run in another order (a GEMM over the concatenation; x's gradient summed inside one GEMM
// rather than added), so the values differ from the per-adapter ones in the last bits: on by
// default on a GPU (--lora_fused_projections auto), off on the CPU, where the replay against
// diffusers + peft is exact. tests/models/lora_test.cc measures the difference.
//
// The adapters' outputs added to their frozen projections' `ys`, all of the same input `x`: one
// autograd node while gradients are recorded (the above), else each adapter's add_to.
std::vector<at::Tensor> add_lora_group(const std::vector<at::Tensor>& ys, const at::Tensor& x,
                                       const std::vector<const LoraAdapter*>& adapters);

// LoRA weights for one projection, as files hold them.
struct LoraTensors {
  std::string module;      // "down_blocks.1.attentions.0.transformer_blocks.0.attn1"
  std::string projection;  // "to_q", "to_k", "to_v", "to_out.0"
  at::Tensor down, up;     // A [r, in], B [out, r]
  double scale = 1.0;      // alpha / r as the file says (1 where it says nothing)
};

// One adapted projection: the attention module's path and the projection's name.
struct LoraSite {
  std::string module;      // "down_blocks.1.attentions.0.transformer_blocks.0.attn1"
  std::string projection;  // "to_q", "to_k", "to_v" or "to_out.0"
  std::shared_ptr<LoraAdapter> adapter;
};

class UNetLora {
 public:
  UNetLora() = default;
  int64_t rank() const { return rank_; }
  double alpha() const { return alpha_; }
  const std::vector<LoraSite>& sites() const { return sites_; }
  // down, up of each site, in site order (the order of the UNet's modules).
  std::vector<at::Tensor> parameters() const;
  int64_t parameter_count() const;
  // A ~ N(0, 1/rank^2) (std 1/rank, diffusers' LoRALinearLayer and the reference), one keyed
  // generator per site (Note [Keyed draws]); B = 0, so training starts from the base model.
  void initialize(uint64_t seed);
  // Every adapter's product dtype (Note [LoRA's product in bf16]); Undefined: A's.
  void set_product_dtype(at::ScalarType dtype);

 private:
  friend UNetLora attach_lora(UNetImpl& unet, int64_t rank, double alpha, const at::TensorOptions& options);
  friend void detach_lora(UNetImpl& unet);
  friend UNetLora attach_lora_weights(UNetImpl& unet, const std::vector<LoraTensors>& weights,
                                      const at::TensorOptions& options, double multiplier);
  int64_t rank_ = 0;
  double alpha_ = 0;
  std::vector<LoraSite> sites_;
};

// Adds adapters (allocated, uninitialised: call initialize() or load values) to every
// attention of `unet`; throws if it already has some. options: dtype and device of A and B.
UNetLora attach_lora(UNetImpl& unet, int64_t rank, double alpha, const at::TensorOptions& options);
// Adds adapters holding `weights` (copied to `options`) at the sites they name. Every site must
// exist with matching shapes; the error names the tensors that do not fit. `multiplier` scales
// every adapter's output on top of its own scale (generation's --lora_scale).
UNetLora attach_lora_weights(UNetImpl& unet, const std::vector<LoraTensors>& weights, const at::TensorOptions& options,
                             double multiplier = 1.0);
// Removes every adapter from `unet`.
void detach_lora(UNetImpl& unet);
// Groups each attention's adapters by input, or not (Note [LoRA's shared down-projection]).
void fuse_lora_projections(UNetImpl& unet, bool fused);

// The projections LoRA adapts, in the order their keys are written.
const std::vector<std::string>& lora_projections();

}  // namespace xltune
