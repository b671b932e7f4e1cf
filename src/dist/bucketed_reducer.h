// Gradients averaged over ranks in buckets, each all-reduced as soon as backward has produced
// its last gradient, while backward still runs (the design of PyTorch DDP's Reducer).
//
// Note [Gradient buckets]
// - Buckets: the trainable tensors in reverse registration order (about the order backward
//   produces their gradients), packed into flat fp32 buffers of about `bucket_bytes` (25 MB), the
//   first one small (`first_bucket_bytes`, 1 MB) so that communication starts early. After the
//   first step the buckets are rebuilt once in the order the gradients really arrived (the UNet
//   registers a block's resnets before its attentions, and the mid block its attention before its
//   resnets, so registration order is not backward order), rank 0's order broadcast to all.
// - Views: before backward, every tensor's .grad is a view of its bucket, so autograd accumulates
//   straight into the bucket (no copy, no second gradient buffer).
// - Ready: a post-accumulate-grad hook per tensor counts down its bucket; a full bucket is
//   launched, strictly in bucket order (every rank issues the same sequence of collectives).
//   Gradient checkpointing's nested backward fires the same hooks; whatever is not launched when
//   backward returns (tensors that got no gradient this step) is launched by finish(), with the
//   zeros its views were set to. Each bucket carries one flag per member after its gradients,
//   so the ranks learn in the same collective which tensors got a gradient anywhere (Note
//   [Tensors without a gradient]); finish() leaves the others' gradients undefined.
// - finish(): waits for every bucket in order and divides by the world size (fp32 reduction), or
//   copies the bf16 mean into the fp32 bucket (Options::reduce_dtype bf16: Note [bf16 gradient
//   reduction]; the bucket is divided by the world size and cast into a bf16 buffer, made at
//   launch and freed in finish(), just before the all-reduce).
// - A captured backward (Note [The step as a CUDA graph], train/trainer.h) runs with the sync
//   off, so its hooks launch nothing; finish() then launches every bucket after it, eagerly, and
//   a replay (whose hooks do not run) hands over the footprint its capture left
//   (replayed_backward). The overlap with backward is lost there; the host's issuing is not.
// - Arithmetic for SDXL: LoRA rank 32 = 46.4 M fp32 = 186 MB = 1 + 8 buckets; the full UNet's
//   2,547 M trained parameters = 10.2 GB = 1 + 389 buckets (bench/scaling_model.py uses these).
#pragma once

#include <c10/core/ScalarType.h>

#include <memory>
#include <vector>

#include "dist/communicator.h"
#include "dist/gradient_reducer.h"

namespace xltune {

class BucketedReducer final : public GradientReducer {
 public:
  struct Options {
    int64_t bucket_bytes = int64_t{25} << 20;
    int64_t first_bucket_bytes = int64_t{1} << 20;
    bool rebuild_after_first_step = true;
    // Build buckets and all-reduce even in a world of one (an identity), so that a single GPU
    // exercises the NCCL path (bench/gpu/run); off for training.
    bool reduce_one_rank = false;
    // The dtype gradients travel in: fp32, or bf16 (Note [bf16 gradient reduction]); the .grad
    // tensors and their buckets stay fp32 either way.
    at::ScalarType reduce_dtype = at::kFloat;
  };
  struct BucketTiming {
    int64_t bytes = 0;  // as sent: 2 per value in bf16
    double launched = 0, done = 0;  // seconds on a steady clock
  };

  BucketedReducer(Communicator& comm, Options options);
  explicit BucketedReducer(Communicator& comm) : BucketedReducer(comm, Options{}) {}
  ~BucketedReducer() override;

  void prepare(const std::vector<at::Tensor>& trainable) override;
  void before_backward() override;
  void set_gradient_sync(bool sync) override { sync_ = sync; }
  void finish() override;
  bool communicates() const override;
  // Capturable once the buckets have their final order (the first step's rebuild done): their
  // views are .grad at the same addresses every step, and finish() launches what the hooks did not.
  std::string capture_blocker() const override;
  std::vector<bool> backward_footprint() const override { return got_grad_; }
  void replayed_backward(const std::vector<bool>& footprint) override;

  std::vector<int64_t> bucket_bytes() const;
  // The last step's buckets: when each was launched and seen complete, and when backward ended.
  const std::vector<BucketTiming>& last_timings() const { return timings_; }
  double last_backward_end() const { return backward_end_; }

  // Called by the hooks (public for them; not an API).
  void on_ready(size_t tensor_index);

 private:
  struct Bucket;
  void build(const std::vector<size_t>& order);
  void clear_hooks();
  void launch_in_order();
  void poll();

  Communicator& comm_;
  Options options_;
  std::vector<at::Tensor> tensors_;
  std::vector<size_t> bucket_of_;
  std::vector<int64_t> offset_of_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  size_t next_launch_ = 0;
  bool observing_ = false;
  bool rebuilt_ = false;
  bool sync_ = true;  // false: backward only accumulates (set_gradient_sync)
  std::vector<size_t> observed_;
  std::vector<bool> got_grad_;  // this step, on this rank
  std::vector<BucketTiming> timings_;
  double backward_end_ = 0;
};

}  // namespace xltune
