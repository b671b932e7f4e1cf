// The optimizers a Trainer steps, behind one interface.
//
// Note [One optimizer interface]
// A run trains up to three groups of tensors (LoRA or the UNet, and the new token rows) with
// AdamW. Where their state lives differs: replicated on every rank (AdamW, train/adamw.h), or
// the UNet's sharded over the ranks (ZeRO-1, train/zero_optimizer.h). The Trainer holds a list
// of Optimizers and calls each at the same points of the step, in list order, so it has no
// branch per kind of optimizer:
//
//   before_backward, after_backward   a sharded optimizer reduces its gradients itself while
//                                     backward runs; the GradientReducer averages the rest
//                                     (reduced_tensors); once per step, around all micro-batches
//   set_gradient_sync                 whether the coming backward is the step's last micro-batch
//   local_grad_norms,                 clipping to one global norm over every optimizer's
//   exchange_grad_norms,              gradients; a sharded optimizer contributes the norm of all
//   add_grad_norms, scale_grads       ranks' shards, its exchange a collective (every rank calls
//                                     it) apart from the device work before and after it
//   step, settle, zero_grad           the update at lr * factor, taken where the step's verdict
//                                     (a device tensor) says so, then its outcome on the host
//                                     (Note [The step's verdict on the device]), then gradients
//                                     cleared; a sharded optimizer's step may return with its
//                                     parameters still arriving (the all-gathers in flight, Note
//                                     [Sharded optimizer state])
//   before_forward_block,             wait for them: for the parameters the forward's next block
//   wait_parameters                   reads (the UNet calls it before each block), or for all
//                                     (before anything else reads or writes the trained tensors:
//                                     backward, a checkpoint, validation, the EMA, a restore)
//   state_tensors, load_state         the checkpoint's shared file, by tensor name, so a run can
//                                     move between a sharded and a replicated optimizer
//   rank_state                        what each rank writes beside it (a sharded optimizer's shard)
//   capture_blocker,                  a step captured as a CUDA graph (Note [The step as a CUDA
//   use_device_learning_rates,        graph], train/trainer.h): why this optimizer cannot be in
//   stage_learning_rates,             one; learning rates and the step's rounding key read from
//   stage_training_step,              device tensors, written before each replay;
//   communicates_in_step,             whether clipping and step() exchange
//   defer_parameter_exchange,         between ranks (then the exchanges run eagerly between the
//   start_parameter_exchange,         graphs: exchange_grad_norms, and step()'s all-gathers
//   replayed_step, replayed_backward  deferred to start_parameter_exchange); a replay's host
//                                     bookkeeping (what step() and the backward hooks do on the
//                                     host besides issuing kernels)
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/safetensors.h"
#include "train/either_way.h"

namespace xltune {

struct AdamWHyper {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

// An optimizer group's hyperparameters and size, for run_config.json and the summary line.
struct GroupSummary {
  std::string name;
  AdamWHyper hyper;
  int64_t tensors = 0, parameters = 0;
};

// A rank's own part of a checkpoint: its file's tensors and string metadata.
struct RankOptimizerState {
  NamedTensors tensors;
  std::map<std::string, std::string> metadata;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  virtual void before_backward() {}
  virtual void after_backward() {}
  // As GradientReducer::set_gradient_sync: false while gradient accumulation's earlier
  // micro-batches run backward (no communication), true for the last.
  virtual void set_gradient_sync(bool sync) { (void)sync; }
  // The trainable tensors whose gradients the GradientReducer averages over the ranks (those of
  // unfrozen groups; none for a sharded optimizer, which reduces its own).
  virtual std::vector<at::Tensor> reduced_tensors() const = 0;
  // The gradient norm in three calls, every optimizer's local_grad_norms, then every one's
  // exchange_grad_norms, then every one's add_grad_norms: the device work this rank does alone,
  // the exchange between ranks (an optimizer whose norm covers several ranks' shards: a collective
  // every rank calls; else nothing), and the result. add_grad_norms appends L2 norms (fp32
  // tensors on the training device) whose joint norm is this optimizer's share of the global one.
  virtual void local_grad_norms() {}
  virtual void exchange_grad_norms() {}
  virtual void add_grad_norms(std::vector<at::Tensor>& norms) = 0;
  // Multiplies every gradient by `coef` (a 0-dim tensor).
  virtual void scale_grads(const at::Tensor& coef) = 0;
  // One update at each group's lr * lr_factor; `training_step` keys stochastic rounding.
  // `apply`: undefined, the update is taken; else a float32 0-dim tensor on the training device,
  // 1 or 0, and the update (weights, moments, the kernel's step counts) is taken only where it
  // is 1, decided on the device (Note [The step's verdict on the device], train/trainer.h):
  // the host's step counts wait for settle().
  virtual void step(double lr_factor, int64_t training_step, const at::Tensor& apply = {}) = 0;
  // Once per step() with `apply`, in order: whether it was 1 (the host has read it). A step may
  // be issued before the one before it is settled (Note [Reading a step one step late],
  // train/trainer.h), never two. Without `apply`, a no-op.
  virtual void settle(bool applied) { (void)applied; }
  virtual void zero_grad() = 0;
  // The forward is about to run block `block` (UNetImpl::block_index_of's numbering): its
  // parameters must be in place when this returns; others may still be arriving.
  virtual void before_forward_block(int block) { (void)block; }
  // Every parameter in place (the tensors of named_parameters() are then valid to read and write).
  virtual void wait_parameters() {}
  // Freezes or thaws a group by name; false if this optimizer has no such group.
  virtual bool set_frozen(const std::string& group, bool frozen) = 0;

  virtual std::vector<GroupSummary> summaries() const = 0;
  // Each group's learning rate at `lr_factor` (0 for a frozen group).
  virtual void add_learning_rates(double lr_factor, std::vector<std::pair<std::string, double>>& out) const = 0;
  // The trained tensors under their state names, live (read them after wait_parameters()).
  virtual std::vector<std::pair<std::string, at::Tensor>> named_parameters() const = 0;
  virtual int64_t parameter_count() const = 0;
  virtual int64_t state_bytes() const = 0;  // held by this rank

  // The state for the checkpoint file rank 0 writes: "<name>.exp_avg", "<name>.exp_avg_sq",
  // "<name>.adamw_step" (AdamW::state_tensors' names); CPU tensors. None from a sharded
  // optimizer: its state is in the ranks' own files (rank_state).
  virtual NamedTensors state_tensors() const = 0;
  // Back from tensors under those names (a sharded run's files merged into them first, by
  // ZeroOptimizer::full_moments_from_shards); throws Error naming what is missing.
  virtual void load_state(const std::map<std::string, at::Tensor>& tensors) = 0;
  // What this rank writes to its own file, if anything.
  virtual std::optional<RankOptimizerState> rank_state() const { return std::nullopt; }

  // Note [The step as a CUDA graph] (train/trainer.h). Why step() cannot be captured now (empty:
  // it can): its kernels would have to read nothing the host changes between steps.
  virtual std::string capture_blocker() const { return "this optimizer has no captured path"; }
  // From now on step() reads each group's learning rate from a device tensor, which
  // stage_learning_rates(factor) sets to lr * factor before each step (outside a capture): the
  // factor may be known only up to the verdict of the step before (Note [Reading a step one step
  // late], train/trainer.h), and step()'s lr_factor is then its if_skipped value (a check that it
  // was staged for this step). A no-op for an optimizer that reads its learning rates on the host
  // (reads_device_learning_rates() false after it: the fused kernel only).
  virtual void use_device_learning_rates() {}
  virtual bool reads_device_learning_rates() const { return false; }
  virtual void stage_learning_rates(const EitherWay& lr_factor) { (void)lr_factor; }
  // The training step the next step() is for, into what its kernels read on the device (bf16
  // state's rounding key), outside a capture; a no-op where nothing is keyed by the step. The
  // Trainer stages every step; with device learning rates step() requires it (a step() that
  // staged its own inside a capture would replay the captured step's key).
  virtual void stage_training_step(int64_t training_step) { (void)training_step; }
  // Whether exchange_grad_norms or step() communicate between ranks (a captured step then runs
  // them eagerly between its graphs). With defer_parameter_exchange(true), step() leaves what it
  // sends after the update to start_parameter_exchange(), which the step's caller calls after it.
  virtual bool communicates_in_step() const { return false; }
  virtual void defer_parameter_exchange(bool on) { (void)on; }
  virtual void start_parameter_exchange() {}
  // A replay of a captured step(apply) happened: the host side of that step(), as if called
  // again with the same arguments (settle() follows as usual).
  virtual void replayed_step() { XLTUNE_FAIL("this optimizer has no captured path"); }
  // A replayed backward ran (its gradient hooks did not): what they would have noted on the host.
  virtual void replayed_backward() {}
};

}  // namespace xltune
