// ZeRO stage 1 (Rajbhandari et al. 2020) for full fine-tuning: the AdamW state of the UNet is
// sharded over the ranks instead of replicated, so each rank holds 1/W of the moments.
//
// Note [Sharded optimizer state]
// - Layout: the trained UNet tensors in reverse registration order, packed into buckets (1 MB,
//   then 25 MB; Note [Gradient buckets]) of flat fp32 parameters and gradients; the tensors become
//   views of the parameter buckets (set_data), their .grad views of the gradient buckets. A bucket
//   of n values is padded to W * c (c = ceil(n / W)); rank r owns [r c, (r + 1) c). The layout is
//   the same on every rank and for every W but for the padding.
// - Step: as backward fills a bucket, its gradients are reduce-scattered (each rank receives the
//   sum of its chunk) while backward goes on; finish() waits and divides by W; the gradient norm
//   is the square root of the all-reduced sum of the ranks' chunk norms (plus the replicated
//   tensors'); each rank updates its chunks with AdamW (adamw_foreach_update or, with the fused
//   kernel, adamw_fused_update: the replicated AdamW's own arithmetic, element for element, over
//   groups of buckets; train/adamw.h), then the
//   chunks are all-gathered into every rank's parameter buckets. Both collectives run in place
//   (the chunk is the rank's slice of its bucket), so sharding adds no buffer: per rank, weights
//   4 B + gradients 4 B + moments (8 or 4 B) / W per parameter. The communication is one
//   all-reduce's: a reduce-scatter and an all-gather.
// - Overlap: step() returns with the all-gathers in flight, started in the order the next
//   forward reads the buckets (the reverse of the bucket order, as the layout is backward's
//   order: the UNet's stem first). The UNet calls before_forward_block(b) before each top-level
//   block (Note [Forward block hook]), which waits for the gathers up to the last one holding a
//   tensor of block b or an earlier one (set_forward_order, from UNetImpl::block_index_of), so a
//   bucket's transfer hides behind the blocks before it; on NCCL the wait orders the compute
//   stream after the transfer and the host goes on. Anything else that reads or writes the
//   parameters waits for all first (wait_parameters: the Trainer after the forward, before the
//   EMA's update, for checkpoints, validation, export and a restore; Note [One optimizer
//   interface]); backward refuses to run before it. Only the timing of the waits differs from a
//   step that waits for its gathers (set_gather_overlap(false)): the values are the same bits.
//   Every rank waits in launch order at the same points, so a transport that exchanges on wait
//   (the thread group) matches the ranks' gathers too.
// - Captured (Note [The step as a CUDA graph], train/trainer.h): no collective runs inside a
//   graph. Backward runs with the sync off (the hooks only note arrivals), finish() launches every
//   reduce-scatter after the last micro-batch's graph; the norm is local_grad_norms (a graph, into
//   norm_sq_, made at construction so every graph writes the same tensor), exchange_grad_norms
//   (eager), add_grad_norms (in the update's graph); step() under defer_parameter_exchange(true)
//   updates every group and starts no all-gather, start_parameter_exchange() starts them all in
//   gather order after the update's graph; the trainer waits for them before the next step's
//   first graph. The same values as the eager step: only when the transfers start differs.
// - The parameters are fp32 (full fine-tuning trains in fp32 with bf16 autocast), so they are
//   their own master weights: each rank updates its shard of them, and the all-gather sends the
//   updated fp32 values.
// - bf16 moments (--optimizer_state_dtype bf16) are rounded stochastically as AdamW's are, with
//   bits hashed from (seed, step, rank) and the value's position in the rank's shard (Note
//   [Rounding bits from a keyed hash], adamw.cc; DrawKind::kShardRounding): the same for a given
//   number of ranks, so a resume on as many ranks is exact; on another number the rounding noise
//   differs (the moments carry over exactly, bf16 -> fp32 -> bf16 loses nothing).
// - Every trained tensor gets a gradient every step in full fine-tuning, so one step count per
//   optimizer suffices (AdamW skips tensors without a gradient and counts steps per tensor);
//   finish() refuses a step in which a tensor got none, naming it, rather than decay it. The fused
//   kernel reads it from one float32 0-dim tensor on the device, given once per bucket, advanced
//   once a step and rebuilt from the count by load_full_moments.
// - bf16 collectives (Note [bf16 gradient reduction]): with `reduce_dtype` bf16 a full bucket is
//   divided by W, cast into a bf16 buffer (made at launch, freed in finish()) and reduce-scattered
//   in bf16; the rank's chunk of the mean is copied into its fp32 gradient chunk. With
//   `gather_dtype` bf16 each rank keeps an fp32 master of its own chunk only (4 B / W per
//   parameter): AdamW updates the master, the master rounded to bf16 is all-gathered (half the
//   bytes), and every rank's working parameters, its own chunk included, become those bf16 values
//   (held in the fp32 tensors). The bf16 values arrive in the first half of the bucket's gradient
//   buffer (its gradients are spent once the update has read them), so no buffer is added;
//   landing them copies them into the parameters and clears the gradients, which before_backward
//   leaves to it. So every rank holds identical weights, as --replica_check_steps
//   checks, and each rank's forward sees exactly what the others' do; under bf16 autocast the
//   matmuls and convolutions would have rounded the weights to bf16 anyway (biases, norms and
//   CPU runs see the rounding). The masters go into the shards ("zero.<k>.master") and come back
//   on resume (full_moments_from_shards merges them as "<name>.master", which Trainer::restore
//   takes over the saved weights), so a resume on any number of ranks, sharded or not, continues
//   from the exact fp32 values; without them (a checkpoint of an fp32 all-gather) the masters
//   start from the saved weights. The exported weights are the working (bf16-valued) ones.
// - Checkpoint: each rank saves its chunks (shard_state); resuming on another number of ranks goes
//   through full per-tensor moments (full_moments_from_shards, load_full_moments), the same names
//   an unsharded AdamW uses ("<name>.exp_avg"), so a run can move between sharded and not.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "train/adamw.h"
#include "train/optimizer.h"

namespace xltune {

class Communicator;

class ZeroOptimizer final : public Optimizer {
 public:
  ZeroOptimizer(std::vector<std::string> names, std::vector<at::Tensor> params, AdamWHyper hyper, Communicator& comm,
                at::ScalarType state_dtype = at::kFloat, uint64_t seed = 0, int64_t bucket_bytes = int64_t{25} << 20,
                int64_t first_bucket_bytes = int64_t{1} << 20, at::ScalarType reduce_dtype = at::kFloat,
                at::ScalarType gather_dtype = at::kFloat, AdamWKernel kernel = AdamWKernel::kForeach);
  ~ZeroOptimizer();
  ZeroOptimizer(const ZeroOptimizer&) = delete;
  ZeroOptimizer& operator=(const ZeroOptimizer&) = delete;

  void before_backward() override;
  // Waits for the reduce-scatters; the chunks then hold the mean gradient.
  void finish();
  void after_backward() override { finish(); }
  void set_gradient_sync(bool sync) override { sync_ = sync; }
  std::vector<at::Tensor> reduced_tensors() const override { return {}; }
  // One norm: of every rank's chunks together. local_grad_norms sums this rank's chunks' squares
  // (fp64), exchange_grad_norms all-reduces the sum (a collective), add_grad_norms its root.
  void local_grad_norms() override;
  void exchange_grad_norms() override;
  void add_grad_norms(std::vector<at::Tensor>& norms) override;
  void scale_grads(const at::Tensor& coef) override;
  // AdamW on this rank's chunks at hyper.lr * lr_factor, then the all-gather of parameters;
  // `training_step` keys the stochastic rounding of bf16 moments.
  // The all-gathers are then in flight (unless set_gather_overlap(false)): wait_parameters() or
  // before_forward_block() before reading or writing the parameters. `apply`: as AdamW::step's
  // (fused: on the device, every rank's shard with the same verdict; foreach: read first, and a
  // step not taken launches no all-gather).
  void step(double lr_factor, int64_t training_step, const at::Tensor& apply = {}) override;
  void settle(bool applied) override;
  // Note [The step as a CUDA graph] (train/trainer.h): with the fused kernel, after the first
  // step. A captured step() starts no all-gather: with the exchange deferred,
  // start_parameter_exchange() starts them all after it, eagerly.
  std::string capture_blocker() const override;
  void stage_training_step(int64_t training_step) override;  // bf16 state: its rounding key
  bool communicates_in_step() const override { return true; }
  void defer_parameter_exchange(bool on) override { defer_gathers_ = on; }
  void start_parameter_exchange() override;
  void replayed_step() override;
  void replayed_backward() override;
  // As AdamW's: with the fused kernel the learning rate is read from a device tensor (float32 on
  // CUDA, float64 on the CPU), staged before each step.
  void use_device_learning_rates() override;
  bool reads_device_learning_rates() const override { return device_lr_.defined(); }
  void stage_learning_rates(const EitherWay& lr_factor) override;
  void zero_grad() override;
  // Waits for the all-gathers of the buckets up to the last one (in launch order) that holds a
  // tensor of forward block `block` or an earlier one (set_forward_order).
  void before_forward_block(int block) override;
  void wait_parameters() override;
  // The forward block that first reads each tensor (one per tensor, in names() order; Note
  // [Forward block hook]). Without it every tensor counts as block 0's: the first block waits for all.
  void set_forward_order(const std::vector<int>& block_of_tensor);
  // false: step() waits for its all-gathers before it returns (the same values, later).
  void set_gather_overlap(bool on) { overlap_gather_ = on; }
  bool set_frozen(const std::string&, bool) override { return false; }  // the UNet trains every step
  std::vector<GroupSummary> summaries() const override;
  void add_learning_rates(double lr_factor, std::vector<std::pair<std::string, double>>& out) const override;
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const override;
  NamedTensors state_tensors() const override { return {}; }
  // load_full_moments from the merged shards, with the step count of "<first name>.adamw_step".
  void load_state(const std::map<std::string, at::Tensor>& tensors) override;
  std::optional<RankOptimizerState> rank_state() const override;

  const std::vector<std::string>& names() const { return names_; }
  const std::vector<at::Tensor>& params() const { return params_; }
  const AdamWHyper& hyper() const { return hyper_; }
  int64_t steps() const { return steps_; }
  int64_t state_bytes() const override;  // moments held by this rank
  int64_t bucket_count() const { return static_cast<int64_t>(buckets_.size()); }
  int64_t parameter_count() const override;

  at::ScalarType reduce_dtype() const { return reduce_dtype_; }
  at::ScalarType gather_dtype() const { return gather_dtype_; }
  AdamWKernel kernel() const { return kernel_; }

  // This rank's chunks: "zero.<k>.exp_avg", "zero.<k>.exp_avg_sq" (and "zero.<k>.master" with a
  // bf16 all-gather) per bucket k, "zero.steps";
  // layout_json(): {"world", "rank", "buckets": [[[name, numel], ...], ...]} for the file's metadata.
  NamedTensors shard_state() const;
  std::string layout_json() const;
  // Full per-tensor moments ("<name>.exp_avg", "<name>.exp_avg_sq", flat) and the step count from
  // the shard files of a checkpoint made on any number of ranks: (tensors, layout_json) per rank;
  // "<name>.master" too when the shards hold masters (a bf16 all-gather's).
  static std::map<std::string, at::Tensor> full_moments_from_shards(
      const std::vector<std::pair<std::map<std::string, at::Tensor>, std::string>>& shards, int64_t* steps);
  // This rank's chunks from full moments (as AdamW::state_tensors names them; reshaped freely).
  // Then the parameters: from "<name>.master" where given (else the parameters as they are), into
  // this rank's master chunk and rounded to bf16 with a bf16 all-gather, as they are otherwise.
  void load_full_moments(const std::map<std::string, at::Tensor>& moments, int64_t steps);

  void on_ready(size_t tensor_index);  // called by the gradient hooks

 private:
  struct Bucket;
  void launch_in_order();
  // step()'s parts: AdamW over the buckets gather_order_[first, end); their all-gathers started.
  void update_group(size_t first, size_t end, double lr_factor, int64_t training_step, const at::Tensor& found_inf);
  void start_gathers(size_t first, size_t end);
  void take_parameters(const std::map<std::string, at::Tensor>& masters);
  // Waits for the all-gathers gather_order_[gathered_, end) and lands them (a bf16 one's values
  // copied into the parameters).
  void land_until(size_t end);
  // Values of chunks updated by one multi-tensor update (its temporaries: 4 or 12 B a value).
  static constexpr int64_t kUpdateGroupValues = int64_t{1} << 25;
  std::vector<std::string> names_;
  std::vector<at::Tensor> params_;
  AdamWHyper hyper_;
  Communicator& comm_;
  at::ScalarType state_dtype_;
  uint64_t seed_;
  at::ScalarType reduce_dtype_, gather_dtype_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  std::vector<bool> got_grad_;
  bool sync_ = true;  // false: backward only accumulates into the buckets (set_gradient_sync)
  std::vector<size_t> bucket_of_;
  std::vector<int64_t> offset_of_;
  size_t next_launch_ = 0;
  size_t next_done_ = 0;  // buckets before it have finished their reduce-scatter
  std::vector<size_t> gather_order_;  // the buckets in reverse: the order the forward reads them
  size_t gathered_ = 0;               // the all-gathers of gather_order_[0, gathered_) have landed
  bool overlap_gather_ = true;
  bool defer_gathers_ = false;    // defer_parameter_exchange
  bool gathers_deferred_ = false;  // a step's all-gathers wait for start_parameter_exchange
  at::Tensor norm_sq_;             // float64 []: this rank's, then all ranks' squared gradient norm
  std::vector<int64_t> shard_offset_;  // bucket k's chunk's first value's position in the shard
  at::Tensor rounding_key_;            // bf16 state: int64 [], the staged step's (stage_training_step)
  int64_t staged_training_step_ = 0;
  int64_t steps_ = 0;
  int pending_steps_ = 0;  // steps(apply) whose counts wait for settle() (at most two)
  // step()'s counting: the host count (or pending_steps_) and the fused kernel's device count by
  // the verdict, `found_inf` set for the fused kernel; false when the foreach kernel read a
  // verdict of 0 (nothing to update).
  bool count_step(const at::Tensor& apply, at::Tensor* found_inf);
  AdamWKernel kernel_;
  // With the fused kernel: steps_ as a float32 0-dim tensor on the buckets' device (made at the
  // first fused step, advanced with steps_, rebuilt by load_full_moments).
  at::Tensor device_step_;
  at::Tensor device_lr_;  // with use_device_learning_rates() and the fused kernel
  double staged_lr_factor_ = 0;
};

}  // namespace xltune
