#include "dist/bucketed_reducer.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <chrono>
#include <numeric>

#include "core/check.h"

namespace xltune {

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct ReadyHook final : torch::autograd::PostAccumulateGradHook {
  ReadyHook(BucketedReducer* r, size_t i) : reducer(r), index(i) {}
  void operator()(const torch::autograd::Variable&) override { reducer->on_ready(index); }
  BucketedReducer* reducer;
  size_t index;
};

}  // namespace

struct BucketedReducer::Bucket {
  // The members' gradients, then one value per member: 1 where it got a gradient on this rank
  // (Note [Tensors without a gradient]), summed over the ranks with the gradients.
  at::Tensor flat;
  at::Tensor grads, got;  // views of flat
  at::Tensor wire;        // bf16 reduction: flat / W in bf16, from launch until finish()
  std::vector<size_t> members;
  size_t pending = 0;
  bool ready = false, launched = false;
  std::unique_ptr<CommWork> work;
  BucketTiming timing;
};

BucketedReducer::BucketedReducer(Communicator& comm, Options options) : comm_(comm), options_(options) {
  XLTUNE_CHECK(options.bucket_bytes > 0 && options.first_bucket_bytes > 0, "reducer: bucket sizes must be positive");
  XLTUNE_CHECK(options.reduce_dtype == at::kFloat || options.reduce_dtype == at::kBFloat16,
               "reducer: gradients are reduced in fp32 or bf16, not ", options.reduce_dtype);
}

BucketedReducer::~BucketedReducer() { clear_hooks(); }

void BucketedReducer::clear_hooks() {
  for (auto& t : tensors_)
    if (t.defined()) torch::autograd::impl::set_post_acc_grad_hooks(t, nullptr);
}

void BucketedReducer::prepare(const std::vector<at::Tensor>& trainable) {
  clear_hooks();
  tensors_ = trainable;
  if (comm_.size() == 1 && !options_.reduce_one_rank) {  // nothing to reduce: no buckets, no hooks, no memory
    buckets_.clear();
    return;
  }
  for (const auto& t : tensors_)
    XLTUNE_CHECK(t.requires_grad() && t.is_leaf(), "reducer: every trainable tensor must be a leaf that requires grad");
  // Reverse registration order until the first step has shown the real one.
  std::vector<size_t> order(tensors_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::reverse(order.begin(), order.end());
  build(order);
  observing_ = options_.rebuild_after_first_step && !rebuilt_ && comm_.size() > 1;
  observed_.clear();
  for (size_t i = 0; i < tensors_.size(); ++i)
    torch::autograd::impl::set_post_acc_grad_hooks(tensors_[i], std::make_unique<ReadyHook>(this, i));
}

void BucketedReducer::build(const std::vector<size_t>& order) {
  buckets_.clear();
  bucket_of_.assign(tensors_.size(), 0);
  offset_of_.assign(tensors_.size(), 0);
  auto start = [&] { buckets_.push_back(std::make_unique<Bucket>()); };
  int64_t filled = 0;
  for (size_t i : order) {
    const at::Tensor& t = tensors_[i];
    XLTUNE_CHECK(t.scalar_type() == at::kFloat, "reducer: trainable tensors are fp32 (got ", t.scalar_type(), ")");
    const int64_t bytes = t.numel() * 4;
    bool fresh = buckets_.empty();
    if (!fresh) {
      const Bucket& current = *buckets_.back();
      const int64_t cap = buckets_.size() == 1 ? options_.first_bucket_bytes : options_.bucket_bytes;
      fresh = tensors_[current.members.front()].device() != t.device() || filled + bytes > cap;
    }
    if (fresh) {
      start();
      filled = 0;
    }
    Bucket& b = *buckets_.back();
    bucket_of_[i] = buckets_.size() - 1;
    offset_of_[i] = filled / 4;
    b.members.push_back(i);
    filled += bytes;
  }
  // Allocate each bucket at its final size.
  for (auto& b : buckets_) {
    int64_t n = 0;
    for (size_t i : b->members) n += tensors_[i].numel();
    const int64_t m = static_cast<int64_t>(b->members.size());
    b->flat = at::zeros({n + m}, tensors_[b->members.front()].options().dtype(at::kFloat));
    b->grads = b->flat.narrow(0, 0, n);
    b->got = b->flat.narrow(0, n, m);
  }
  got_grad_.assign(tensors_.size(), false);
}

std::vector<int64_t> BucketedReducer::bucket_bytes() const {
  std::vector<int64_t> out;
  for (const auto& b : buckets_) out.push_back(b->grads.numel() * 4);
  return out;
}

void BucketedReducer::before_backward() {
  if (buckets_.empty()) return;
  at::NoGradGuard no_grad;
  for (auto& b : buckets_) {
    b->flat.zero_();
    b->pending = b->members.size();
    b->ready = b->launched = false;
    b->work.reset();
    b->wire = at::Tensor();
    b->timing = BucketTiming{b->grads.numel() * static_cast<int64_t>(at::elementSize(options_.reduce_dtype)), 0, 0};
    for (size_t i : b->members) {
      at::Tensor& t = tensors_[i];
      XLTUNE_CHECK(!t.grad().defined(), "reducer: gradients must be cleared before backward");
      t.mutable_grad() = b->grads.narrow(0, offset_of_[i], t.numel()).view(t.sizes());
    }
  }
  got_grad_.assign(tensors_.size(), false);
  next_launch_ = 0;
}

void BucketedReducer::on_ready(size_t i) {
  if (buckets_.empty()) return;
  got_grad_[i] = true;
  if (!sync_) return;  // an earlier micro-batch: the gradient accumulated in its bucket, no more
  if (observing_) observed_.push_back(i);
  Bucket& b = *buckets_[bucket_of_[i]];
  XLTUNE_CHECK(b.pending > 0, "reducer: a gradient arrived twice in one step (a tensor used twice in the graph?)");
  if (--b.pending == 0) b.ready = true;
  launch_in_order();
  poll();
}

void BucketedReducer::launch_in_order() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_]->ready) {
    Bucket& b = *buckets_[next_launch_++];
    std::vector<float> got;
    for (size_t i : b.members) got.push_back(got_grad_[i] ? 1.f : 0.f);
    b.got.copy_(at::tensor(got, at::kFloat));  // one small copy per bucket, not one per tensor
    b.timing.launched = now();
    if (options_.reduce_dtype == at::kBFloat16) {
      // Note [bf16 gradient reduction]: divided in fp32 first, then rounded once; the sum is of
      // the ranks' shares of the mean (the flags become 1/W each, still non-zero when summed).
      at::NoGradGuard no_grad;
      if (comm_.size() > 1) b.flat.div_(comm_.size());
      b.wire = b.flat.to(at::kBFloat16);
      b.work = start_all_reduce_sum_bf16(comm_, b.wire);
    } else {
      b.work = comm_.start_all_reduce_sum(b.flat);
    }
    b.launched = true;
  }
}

void BucketedReducer::poll() {
  // MPI progresses non-blocking collectives only inside MPI calls: test the ones in flight.
  for (size_t k = 0; k < next_launch_; ++k) {
    Bucket& b = *buckets_[k];
    if (b.work && b.timing.done == 0 && b.work->test()) b.timing.done = now();
  }
}

bool BucketedReducer::communicates() const { return comm_.size() > 1 || options_.reduce_one_rank; }

std::string BucketedReducer::capture_blocker() const {
  if (observing_) return "the gradient buckets are rebuilt in backward's order after the first step";
  return "";
}

void BucketedReducer::replayed_backward(const std::vector<bool>& footprint) {
  if (buckets_.empty()) return;
  XLTUNE_CHECK(footprint.size() == tensors_.size(), "reducer: a footprint of ", footprint.size(), " tensors for ",
               tensors_.size());
  XLTUNE_CHECK(!sync_, "reducer: a replayed backward runs with the gradient sync off");
  got_grad_ = footprint;
}

void BucketedReducer::finish() {
  if (buckets_.empty()) return;
  backward_end_ = now();
  for (auto& b : buckets_) b->ready = true;  // whatever got no gradient here goes with zeros
  launch_in_order();
  at::NoGradGuard no_grad;
  timings_.clear();
  for (auto& b : buckets_) {
    b->work->wait();
    if (b->timing.done == 0) b->timing.done = now();
    if (b->wire.defined()) {
      b->flat.copy_(b->wire);  // the mean already (divided before the sum)
      b->wire = at::Tensor();
    } else if (comm_.size() > 1) {
      b->flat.div_(comm_.size());
    }
    timings_.push_back(b->timing);
  }
  // Note [Tensors without a gradient]: one that got none on any rank is undefined on every rank.
  std::vector<at::Tensor> flags;
  for (const auto& b : buckets_) flags.push_back(b->got);
  const at::Tensor anywhere = at::cat(flags).cpu();  // one small read per step
  const float* any = anywhere.data_ptr<float>();
  size_t flag = 0;
  for (const auto& b : buckets_)
    for (size_t i : b->members)
      if (any[flag++] == 0) tensors_[i].mutable_grad() = at::Tensor();
  if (observing_) {
    observing_ = false;
    rebuilt_ = true;
    // The real order, the same on every rank: rank 0's, then anything it did not see.
    std::vector<int64_t> order(tensors_.size(), -1);
    std::vector<bool> seen(tensors_.size(), false);
    size_t k = 0;
    for (size_t i : observed_)
      if (!seen[i]) seen[i] = true, order[k++] = static_cast<int64_t>(i);
    for (size_t i = tensors_.size(); i-- > 0;)
      if (!seen[i]) order[k++] = static_cast<int64_t>(i);
    at::Tensor shared = at::tensor(order, at::kLong);
    if (comm_.device_type() == c10::DeviceType::CUDA) shared = shared.to(tensors_.front().device());
    comm_.broadcast(shared, 0);
    shared = shared.cpu();
    std::vector<size_t> rebuilt(tensors_.size());
    for (size_t j = 0; j < rebuilt.size(); ++j) rebuilt[j] = static_cast<size_t>(shared[j].item<int64_t>());
    // This step's gradients stay in the old buckets' views (kept alive by .grad) until cleared.
    build(rebuilt);
  }
}

}  // namespace xltune
