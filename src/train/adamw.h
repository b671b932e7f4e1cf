// AdamW (Loshchilov & Hutter), computed as torch.optim.AdamW's single-tensor path computes it,
// with parameter groups and a state that a checkpoint can hold as named tensors:
//
//   step += 1
//   p     *= 1 - lr * weight_decay                       (decoupled decay)
//   m      = lerp(m, g, 1 - beta1)
//   v      = beta2 v + (1 - beta2) g^2
//   p     -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
//
// Two kernels compute it (AdamWKernel), chosen per optimizer (--adamw_kernel):
// - kForeach: one _foreach_ op per line above over a group's tensors (a multi-tensor kernel per
//   line on a GPU, ~9 launches a group; on the CPU the single-tensor kernels, so the same bits as
//   torch's single-tensor AdamW, which the replay against diffusers relies on), with the bias
//   corrections computed on the host from each tensor's step count: adamw_foreach_update.
// - kFused: torch's fused AdamW (at::_fused_adamw_, as torch.optim.AdamW(fused=True)), one pass
//   over each value for all lines at once: adamw_fused_update. It reads each tensor's step count
//   from a float32 0-dim tensor on the tensor's device (AdamWTensorState::device_step), which the
//   optimizer advances with one _foreach_add_ per group and step, so a step has no host-to-device
//   copy and no per-tensor launches. Its arithmetic is fp32 like the foreach path's but grouped
//   otherwise (the bias corrections in fp32 on the device), so it differs from torch's
//   single-tensor AdamW in the last bits: the default on GPUs, not on the CPU.
// ZeRO-1 runs the same functions on its shard (train/zero_optimizer.h), so the sharded and the
// replicated update are one arithmetic for either kernel.
//
// Each tensor counts its own steps, so a group that is frozen for a while (new token rows
// after the pivot) resumes its bias correction where it stopped, as torch's would; a tensor
// without a gradient is skipped. A frozen group keeps its state.
//
// Optimizer state in bf16 (state_dtype kBFloat16) halves the moments' memory, which makes full
// fine-tuning of SDXL's 2.6 B-parameter UNet fit one 48 GB A40 (configs/a40-full-1024.cfg): m
// and v are updated in fp32 and stored back with stochastic rounding (random bits added below
// bf16's last place, then truncated), so that small updates are not lost on average. The
// rounding bits are a hash of (seed, step, the value's position in the state), computed on the
// device (Note [Rounding bits from a keyed hash], adamw.cc).
#pragma once

#include <ATen/core/Tensor.h>

#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/safetensors.h"
#include "train/optimizer.h"

namespace xltune {

// Which of the header's two kernels updates the groups (--adamw_kernel).
enum class AdamWKernel { kForeach, kFused };
// "foreach" or "fused" (--adamw_kernel's values, run_config.json's "optimizer.kernel").
const char* adamw_kernel_name(AdamWKernel kernel);

struct AdamWGroup {
  std::string name;  // "lora", "text_embeddings", "unet"
  AdamWHyper hyper;
  std::vector<std::string> names;  // one per tensor, unique over all groups
  std::vector<at::Tensor> params;
  bool frozen = false;
};

struct AdamWTensorState {
  at::Tensor exp_avg, exp_avg_sq;  // allocated at the first update
  int64_t step = 0;
  // With the fused kernel: `step` as a float32 0-dim tensor on the parameter's device, which the
  // kernel reads (exact up to 2^24 steps). Made at the tensor's first fused update, advanced with
  // the others of its group in one _foreach_add_, rebuilt from `step` by load_state_tensors.
  at::Tensor device_step;
};

// Replicated state: every rank holds all of it and applies the same update (Note [One
// optimizer interface]).
class AdamW final : public Optimizer {
 public:
  explicit AdamW(std::vector<AdamWGroup> groups, at::ScalarType state_dtype = at::kFloat, uint64_t seed = 0,
                 AdamWKernel kernel = AdamWKernel::kForeach);

  // One update of every tensor of every unfrozen group that has a gradient, at learning rate
  // group.lr * lr_factor. `training_step` keys the stochastic rounding (bf16 state only).
  // With `apply` (Optimizer::step): the fused kernel takes it on the device (found_inf = 1 -
  // apply; the device step counts advance by apply); the foreach kernel, whose bias corrections
  // are host numbers, reads it first (on a GPU a host sync: fused is the default there).
  void step(double lr_factor, int64_t training_step, const at::Tensor& apply = {}) override;
  // The host step counts of the last step(apply)'s tensors advance if it was applied.
  void settle(bool applied) override;
  // Sets every gradient to undefined (as torch's zero_grad(set_to_none=True)).
  void zero_grad() override;
  bool set_frozen(const std::string& group, bool frozen) override;
  // Note [The step as a CUDA graph] (train/trainer.h): the fused kernel (fp32 or bf16 state), once
  // every unfrozen tensor has its state (a captured first update would zero the moments on every
  // replay), can be captured. Device learning rates (the Trainer's on the fused kernel, for
  // captured steps and steps issued before the one before is read): a 0-dim tensor per group, the
  // fused kernel's tensor-lr form: float32 on CUDA (its kernel's type: the rate rounded to float32
  // before the kernel reads it, where the host-lr form keeps the double), float64 on the CPU (its
  // kernel reads a double: the same bits as the host-lr form). With the foreach kernel, a no-op.
  std::string capture_blocker() const override;
  // bf16 state: the key of `training_step`'s rounding bits into the device tensor the rounding
  // reads (Note [Rounding bits from a keyed hash], adamw.cc). step() stages its own where it
  // reads its learning rates on the host; with device learning rates it must have been staged.
  void stage_training_step(int64_t training_step) override;
  void use_device_learning_rates() override;
  bool reads_device_learning_rates() const override { return device_learning_rates_; }
  void stage_learning_rates(const EitherWay& lr_factor) override;
  void replayed_step() override;

  std::vector<at::Tensor> reduced_tensors() const override;
  // One norm per unfrozen tensor that has a gradient, as torch.nn.utils.clip_grad_norm_ takes them.
  void add_grad_norms(std::vector<at::Tensor>& norms) override;
  void scale_grads(const at::Tensor& coef) override;
  std::vector<GroupSummary> summaries() const override;
  void add_learning_rates(double lr_factor, std::vector<std::pair<std::string, double>>& out) const override;
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const override;
  int64_t parameter_count() const override;
  void load_state(const std::map<std::string, at::Tensor>& tensors) override { load_state_tensors(tensors); }

  const std::vector<AdamWGroup>& groups() const { return groups_; }
  const AdamWGroup& group(const std::string& name) const;
  at::ScalarType state_dtype() const { return state_dtype_; }
  AdamWKernel kernel() const { return kernel_; }
  // Note [AdamW's temporaries] (adamw.cc): the most values updated in one call when the update
  // makes temporaries (bf16 state, or the foreach kernel); a tensor larger than it goes alone.
  static constexpr int64_t kUpdateChunkValues = int64_t{1} << 25;
  void set_update_chunk_values(int64_t values) { update_chunk_values_ = values; }
  // Kernel calls (chunks) made by the updates so far.
  int64_t update_chunks() const { return chunks_; }
  // The state of tensor i of group g (flattened index order: groups, then tensors).
  const AdamWTensorState& state(size_t flat_index) const { return state_.at(flat_index); }
  AdamWTensorState& mutable_state(size_t flat_index) { return state_.at(flat_index); }
  size_t tensor_count() const { return state_.size(); }
  // Bytes of optimizer state held now.
  int64_t state_bytes() const override;

  // The state as named tensors for a checkpoint: "<name>.exp_avg", "<name>.exp_avg_sq" (for
  // tensors that have been stepped) and "<name>.adamw_step" (int64 []) for every tensor; by
  // name, so that a checkpoint loads into another grouping (ZeRO-1 runs hold the UNet's
  // moments elsewhere, train/zero_optimizer.h, under the same names).
  NamedTensors state_tensors() const override;
  // Back from state_tensors() (a tensor without "<name>.adamw_step" was never stepped); throws
  // Error naming what is missing or shaped otherwise.
  void load_state_tensors(const std::map<std::string, at::Tensor>& tensors);

 private:
  // One group's update of the tensors at flat indices `stepped` (the group's tensors start at
  // flat index `first`).
  // Note [AdamW's bf16 moments in one pass] (adamw.cc): a chunk's bf16 moments as two flat fp32
  // buffers, m and v the per-tensor views of them the update writes; then rounded back.
  struct BfMoments {
    at::Tensor m_flat, v_flat;
    std::vector<at::Tensor> m, v;
    std::vector<int64_t> offsets;  // of each tensor in the flat buffers
    int64_t values = 0;
  };
  BfMoments stage_bf16_moments(const std::vector<size_t>& stepped, size_t begin, size_t end) const;
  void round_bf16_moments(const BfMoments& staged, const std::vector<size_t>& stepped, size_t begin, size_t end);
  // `apply`: as step()'s, for the fused kernel (undefined: taken).
  void update(const AdamWGroup& g, size_t first, const std::vector<size_t>& stepped, double lr_factor,
              const at::Tensor& apply);
  // The kernel's call on stepped[begin, end) (Note [AdamW's temporaries]) at learning rate lr.
  // `device_lr`: undefined, or the group's device learning rate (then `lr` is its value).
  void update_chunk(const AdamWGroup& g, size_t first, const std::vector<size_t>& stepped, size_t begin, size_t end,
                    double lr, const at::Tensor& device_lr, const at::Tensor& found_inf);
  // The gradients of the unfrozen groups' tensors that have one, in group order.
  std::vector<at::Tensor> present_grads() const;
  std::vector<AdamWGroup> groups_;
  std::vector<AdamWTensorState> state_;
  at::ScalarType state_dtype_;
  uint64_t seed_;
  AdamWKernel kernel_;
  // Per step(apply) not yet settled, oldest first (at most two: Note [Reading a step one step
  // late], train/trainer.h), the flat indices it updated on the device whose host counts wait.
  std::deque<std::vector<size_t>> pending_;
  std::vector<size_t> last_pending_;  // the last step(apply)'s, for replayed_step()
  bool device_learning_rates_ = false;
  std::vector<at::Tensor> device_lr_;  // per group, with use_device_learning_rates()
  double staged_lr_factor_ = 0;        // its if_skipped value
  int64_t update_chunk_values_ = kUpdateChunkValues;
  int64_t chunks_ = 0;
  // bf16 state: the staged step's rounding key (int64 [] on the tensors' device), that step, and
  // each tensor's first value's position in the state (flat order).
  at::Tensor rounding_key_;
  int64_t staged_training_step_ = 0;
  std::vector<int64_t> value_offsets_;
};

// The lines of the header after `step += 1` for tensors k = 0 .. n-1 together, one _foreach_ op
// per line: params[k] updated from grads[k] and the moments m[k], v[k] (in place, in the grads'
// dtype; params may be another), at learning rate `lr` and the tensor's step count steps[k].
// The tensors may be views (ZeRO-1's chunks of its buckets).
void adamw_foreach_update(const AdamWHyper& hyper, double lr, const std::vector<at::Tensor>& params,
                          const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& m,
                          const std::vector<at::Tensor>& v, const std::vector<int64_t>& steps);

// The same update with torch's fused kernel (at::_fused_adamw_), for tensors k = 0 .. n-1 at once.
// steps[k] is tensor k's step count *after* `step += 1`, a float32 0-dim tensor on its device (the
// kernel reads it and does not advance it: the caller does, as torch.optim's _fused_adamw does); one
// tensor may stand for several k. grads, m and v share one dtype and device (the kernel's
// restriction); params of another dtype, or tensors that are not contiguous, are updated through
// contiguous copies and written back. found_inf: undefined, or a float32 0-dim tensor on the
// tensors' device; where it is 1 the kernel changes nothing (torch's GradScaler uses it the same
// way; the caller then leaves the step counts as they were).
void adamw_fused_update(const AdamWHyper& hyper, double lr, const std::vector<at::Tensor>& params,
                        const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& m,
                        const std::vector<at::Tensor>& v, const std::vector<at::Tensor>& steps,
                        const at::Tensor& found_inf = {});
// The same with the learning rate read from `lr`, a 0-dim tensor on the tensors' device (a
// captured step's input): float32, or float64 on the CPU.
void adamw_fused_update(const AdamWHyper& hyper, const at::Tensor& lr, const std::vector<at::Tensor>& params,
                        const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& m,
                        const std::vector<at::Tensor>& v, const std::vector<at::Tensor>& steps,
                        const at::Tensor& found_inf = {});

// Note [Rounding bits from a keyed hash] (adamw.cc): the hash of positions first .. first +
// count - 1 under `key` (a 0-dim int64 tensor on the device the bits are made on), int64; and
// from such bits, the int32 noise stochastic_round_with_noise takes for m (the low 16 bits) and
// for v (the next 16).
at::Tensor keyed_rounding_bits(const at::Tensor& key, int64_t first, int64_t count);
std::pair<at::Tensor, at::Tensor> rounding_noise_of(const at::Tensor& bits);

// fp32 -> bf16 with stochastic rounding, the random bits given: `noise`, int32 in [0, 2^16), one
// per value of x. Unbiased on average over uniform noise, exact where the value is a bf16 already.
at::Tensor stochastic_round_with_noise(const at::Tensor& x, const at::Tensor& noise);

}  // namespace xltune
