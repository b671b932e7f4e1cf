#include "train/zero_optimizer.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/keyed_random.h"
#include "dist/communicator.h"

namespace xltune {

namespace {
struct ZeroHook final : torch::autograd::PostAccumulateGradHook {
  ZeroHook(ZeroOptimizer* z, size_t i) : zero(z), index(i) {}
  void operator()(const torch::autograd::Variable&) override { zero->on_ready(index); }
  ZeroOptimizer* zero;
  size_t index;
};
}  // namespace

struct ZeroOptimizer::Bucket {
  std::vector<size_t> members;
  int64_t numel = 0, chunk = 0;  // real values; values per rank (padded total = chunk * W)
  at::Tensor param, grad;        // [chunk * W]
  at::Tensor chunk_grad;         // grad's slice of this rank: reduce-scattered in place
  at::Tensor exp_avg, exp_avg_sq;  // [chunk]
  at::Tensor master;               // [chunk] fp32, with a bf16 all-gather: this rank's own values
  at::Tensor wire;                 // [chunk * W] bf16, a bf16 reduce-scatter's from launch to finish()
  size_t pending = 0;
  bool ready = false;
  std::unique_ptr<CommWork> work;
  // The all-gather of the updated parameters, from step() until it lands (land()); with a bf16
  // all-gather, `staged` is where it arrives: the first half of `grad`'s bytes as bf16 [chunk * W].
  std::unique_ptr<CommWork> gather;
  at::Tensor staged;
  int first_block = 0;  // the first forward block that reads one of its tensors (set_forward_order)
};

ZeroOptimizer::ZeroOptimizer(std::vector<std::string> names, std::vector<at::Tensor> params, AdamWHyper hyper,
                             Communicator& comm, at::ScalarType state_dtype, uint64_t seed, int64_t bucket_bytes,
                             int64_t first_bucket_bytes, at::ScalarType reduce_dtype, at::ScalarType gather_dtype,
                             AdamWKernel kernel)
    : names_(std::move(names)),
      params_(std::move(params)),
      hyper_(hyper),
      comm_(comm),
      state_dtype_(state_dtype),
      seed_(seed),
      reduce_dtype_(reduce_dtype),
      gather_dtype_(gather_dtype),
      kernel_(kernel) {
  XLTUNE_CHECK(state_dtype == at::kFloat || state_dtype == at::kBFloat16, "ZeRO: moments in fp32 or bf16");
  XLTUNE_CHECK(reduce_dtype == at::kFloat || reduce_dtype == at::kBFloat16, "ZeRO: gradients reduced in fp32 or bf16");
  XLTUNE_CHECK(gather_dtype == at::kFloat || gather_dtype == at::kBFloat16,
               "ZeRO: parameters gathered in fp32 or bf16");
  XLTUNE_CHECK(names_.size() == params_.size() && !params_.empty(), "ZeRO: ", params_.size(), " tensors, ",
               names_.size(), " names");
  const int64_t W = comm.size();
  bucket_of_.assign(params_.size(), 0);
  got_grad_.assign(params_.size(), false);
  offset_of_.assign(params_.size(), 0);
  int64_t filled = 0;
  for (size_t j = params_.size(); j-- > 0;) {
    const at::Tensor& p = params_[j];
    XLTUNE_CHECK(p.scalar_type() == at::kFloat && p.is_leaf() && p.requires_grad(), "ZeRO: ", names_[j],
                 " must be a trainable fp32 tensor");
    const int64_t bytes = p.numel() * 4;
    const int64_t cap = buckets_.size() == 1 ? first_bucket_bytes : bucket_bytes;  // of the bucket being filled
    if (buckets_.empty() || (filled > 0 && filled + bytes > cap)) {
      buckets_.push_back(std::make_unique<Bucket>());
      filled = 0;
    }
    Bucket& b = *buckets_.back();
    bucket_of_[j] = buckets_.size() - 1;
    offset_of_[j] = b.numel;
    b.members.push_back(j);
    b.numel += p.numel();
    filled += bytes;
  }
  at::NoGradGuard no_grad;
  for (auto& b : buckets_) {
    b->chunk = (b->numel + W - 1) / W;
    const auto o = params_[b->members.front()].options().dtype(at::kFloat);
    b->param = at::zeros({b->chunk * W}, o);
    b->grad = at::zeros({b->chunk * W}, o);
    b->chunk_grad = b->grad.narrow(0, comm_.rank() * b->chunk, b->chunk);
    b->exp_avg = at::zeros({b->chunk}, o.dtype(state_dtype_));
    b->exp_avg_sq = at::zeros({b->chunk}, o.dtype(state_dtype_));
    for (size_t j : b->members) {
      at::Tensor view = b->param.narrow(0, offset_of_[j], params_[j].numel()).view(params_[j].sizes());
      view.copy_(params_[j].detach());
      params_[j].set_data(view);
    }
    if (gather_dtype_ == at::kBFloat16) b->master = at::zeros({b->chunk}, o);
  }
  norm_sq_ = at::zeros({}, buckets_.front()->param.options().dtype(at::kDouble));
  int64_t shard_values = 0;
  for (const auto& b : buckets_) shard_offset_.push_back(shard_values), shard_values += b->chunk;
  for (size_t k = buckets_.size(); k-- > 0;) gather_order_.push_back(k);
  gathered_ = gather_order_.size();
  take_parameters({});
  for (size_t j = 0; j < params_.size(); ++j)
    torch::autograd::impl::set_post_acc_grad_hooks(params_[j], std::make_unique<ZeroHook>(this, j));
}

ZeroOptimizer::~ZeroOptimizer() {
  for (auto& p : params_) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
}

int64_t ZeroOptimizer::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : params_) n += p.numel();
  return n;
}

int64_t ZeroOptimizer::state_bytes() const {
  int64_t n = 0;
  for (const auto& b : buckets_) n += b->exp_avg.nbytes() + b->exp_avg_sq.nbytes();
  return n;
}

void ZeroOptimizer::set_forward_order(const std::vector<int>& block_of_tensor) {
  XLTUNE_CHECK(block_of_tensor.size() == params_.size(), "ZeRO: ", block_of_tensor.size(), " blocks for ",
               params_.size(), " tensors");
  for (auto& b : buckets_) {
    b->first_block = block_of_tensor[b->members.front()];
    for (size_t j : b->members) b->first_block = std::min(b->first_block, block_of_tensor[j]);
  }
}

void ZeroOptimizer::land_until(size_t end) {
  at::NoGradGuard no_grad;
  for (; gathered_ < end; ++gathered_) {
    Bucket& b = *buckets_[gather_order_[gathered_]];
    if (!b.gather) continue;  // a step that failed before launching it
    b.gather->wait();
    b.gather.reset();
    if (b.staged.defined()) {
      b.param.copy_(b.staged);  // every rank, its own chunk included: the bf16 values
      b.staged = at::Tensor();
      b.grad.zero_();  // what before_backward left to it: the staging was in the gradient bucket
    }
  }
}

void ZeroOptimizer::before_forward_block(int block) {
  // Every gather launched before the last one the block needs, too: they complete in launch order
  // anyway, and every rank then waits for them in the same order.
  size_t end = gathered_;
  for (size_t i = gathered_; i < gather_order_.size(); ++i)
    if (buckets_[gather_order_[i]]->first_block <= block) end = i + 1;
  land_until(end);
  // Testing the oldest gather still in flight lets MPI progress them while the block computes.
  if (gathered_ < gather_order_.size() && buckets_[gather_order_[gathered_]]->gather)
    buckets_[gather_order_[gathered_]]->gather->test();
}

void ZeroOptimizer::wait_parameters() { land_until(gather_order_.size()); }

void ZeroOptimizer::before_backward() {
  at::NoGradGuard no_grad;
  for (auto& b : buckets_) {
    if (!b->staged.defined()) b->grad.zero_();  // else a bf16 gather arrives there: land() zeroes it
    b->pending = b->members.size();
    b->ready = false;
    b->work.reset();
    b->wire = at::Tensor();
    for (size_t j : b->members) {
      XLTUNE_CHECK(!params_[j].grad().defined(), "ZeRO: gradients must be cleared before backward");
      params_[j].mutable_grad() = b->grad.narrow(0, offset_of_[j], params_[j].numel()).view(params_[j].sizes());
    }
  }
  next_launch_ = 0;
  next_done_ = 0;
  got_grad_.assign(params_.size(), false);
}

void ZeroOptimizer::on_ready(size_t j) {
  XLTUNE_CHECK(gathered_ == gather_order_.size(), "ZeRO: backward ran before the parameters of the last step ",
               "were all in place (wait_parameters)");
  if (!sync_) {  // an earlier micro-batch (gradient accumulation): it accumulated in the bucket
    got_grad_[j] = true;
    return;
  }
  Bucket& b = *buckets_[bucket_of_[j]];
  XLTUNE_CHECK(b.pending > 0, "ZeRO: ", names_[j], "'s gradient arrived twice in one step");
  got_grad_[j] = true;
  if (--b.pending == 0) b.ready = true;
  launch_in_order();
  // Testing the oldest unfinished request lets MPI progress them all while backward runs.
  while (next_done_ < next_launch_ && buckets_[next_done_]->work->test()) ++next_done_;
}

void ZeroOptimizer::launch_in_order() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_]->ready) {
    Bucket& b = *buckets_[next_launch_++];
    if (reduce_dtype_ == at::kBFloat16) {
      // Note [bf16 gradient reduction]: divided in fp32, rounded once, summed as shares of the mean.
      at::NoGradGuard no_grad;
      if (comm_.size() > 1) b.grad.div_(comm_.size());
      b.wire = b.grad.to(at::kBFloat16);
      b.work = start_reduce_scatter_sum_bf16(comm_, b.wire, b.wire.narrow(0, comm_.rank() * b.chunk, b.chunk));
    } else {
      b.work = comm_.start_reduce_scatter_sum(b.grad, b.chunk_grad);
    }
  }
}

void ZeroOptimizer::finish() {
  for (size_t j = 0; j < params_.size(); ++j)
    XLTUNE_CHECK(got_grad_[j], "ZeRO-1: ", names_[j], " got no gradient this step; the sharded optimizer updates ",
                 "every tensor each step (Note [Sharded optimizer state]): run with --zero off");
  for (auto& b : buckets_) b->ready = true;
  launch_in_order();
  at::NoGradGuard no_grad;
  for (auto& b : buckets_) {
    b->work->wait();
    b->work.reset();
    if (b->wire.defined()) {
      b->chunk_grad.copy_(b->wire.narrow(0, comm_.rank() * b->chunk, b->chunk));  // the mean already
      b->wire = at::Tensor();
    } else {
      b->chunk_grad.div_(comm_.size());
    }
  }
}

void ZeroOptimizer::local_grad_norms() {
  at::NoGradGuard no_grad;
  // In place into the one tensor made at construction: a captured step writes it from one graph
  // and reads it in the next, with the exchange between (Note [The step as a CUDA graph]).
  norm_sq_.zero_();
  for (const auto& b : buckets_) norm_sq_.add_(b->chunk_grad.to(at::kDouble).pow(2).sum());
}

void ZeroOptimizer::exchange_grad_norms() {
  at::NoGradGuard no_grad;
  // MPI reduces CPU tensors, NCCL device ones (Communicator::device_type).
  if (norm_sq_.device().type() == comm_.device_type()) {
    comm_.all_reduce_sum(norm_sq_);
  } else {
    at::Tensor on_comm = norm_sq_.to(comm_.device_type());
    comm_.all_reduce_sum(on_comm);
    norm_sq_.copy_(on_comm);
  }
}

void ZeroOptimizer::add_grad_norms(std::vector<at::Tensor>& norms) {
  at::NoGradGuard no_grad;
  norms.push_back(norm_sq_.sqrt().to(buckets_.front()->chunk_grad.options()));
}

void ZeroOptimizer::scale_grads(const at::Tensor& coef) {
  at::NoGradGuard no_grad;
  for (auto& b : buckets_) b->chunk_grad.mul_(coef);
}

std::vector<GroupSummary> ZeroOptimizer::summaries() const {
  return {GroupSummary{"unet (ZeRO-1: state sharded over the ranks)", hyper_, static_cast<int64_t>(params_.size()),
                       parameter_count()}};
}

void ZeroOptimizer::add_learning_rates(double lr_factor, std::vector<std::pair<std::string, double>>& out) const {
  out.emplace_back("unet", hyper_.lr * lr_factor);
}

std::vector<std::pair<std::string, at::Tensor>> ZeroOptimizer::named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) out.emplace_back(names_[i], params_[i]);
  return out;
}

void ZeroOptimizer::load_state(const std::map<std::string, at::Tensor>& tensors) {
  auto st = tensors.find(names_.front() + ".adamw_step");
  load_full_moments(tensors, st == tensors.end() ? 0 : st->second.item<int64_t>());
}

std::optional<RankOptimizerState> ZeroOptimizer::rank_state() const {
  return RankOptimizerState{shard_state(), {{"zero_layout", layout_json()}}};
}

bool ZeroOptimizer::count_step(const at::Tensor& apply, at::Tensor* found_inf) {
  XLTUNE_CHECK(pending_steps_ < 2, "ZeRO: step() with two steps unsettled");
  // As AdamW::step: the foreach kernel reads the verdict (every rank the same value: it comes
  // from the global norm), the fused one takes it on the device.
  at::Tensor on_device = apply;
  if (apply.defined() && kernel_ == AdamWKernel::kForeach) {
    if (apply.item<float>() == 0) return false;
    on_device = at::Tensor();
  }
  if (kernel_ == AdamWKernel::kFused) {
    if (!device_step_.defined())  // the step before this one
      device_step_ = at::full({}, static_cast<double>(steps_),
                              at::TensorOptions().dtype(at::kFloat).device(buckets_.front()->param.device()));
    if (on_device.defined()) {
      device_step_.add_(on_device);
      *found_inf = 1 - on_device;
    } else {
      device_step_.add_(1);
    }
  }
  if (on_device.defined())
    ++pending_steps_;
  else
    ++steps_;
  return true;
}

void ZeroOptimizer::use_device_learning_rates() {
  device_lr_ = at::Tensor();
  if (kernel_ != AdamWKernel::kFused) return;  // the foreach kernel's rate is a host number
  const at::Device device = buckets_.front()->param.device();
  device_lr_ = at::zeros({}, at::TensorOptions().dtype(device.is_cpu() ? at::kDouble : at::kFloat).device(device));
}

void ZeroOptimizer::stage_learning_rates(const EitherWay& lr_factor) {
  XLTUNE_CHECK(device_lr_.defined(), "ZeRO: stage_learning_rates without use_device_learning_rates (fused kernel)");
  EitherWay{hyper_.lr * lr_factor.if_skipped, hyper_.lr * lr_factor.if_taken, lr_factor.before_taken}.write_into(
      device_lr_);
  staged_lr_factor_ = lr_factor.if_skipped;
}

void ZeroOptimizer::step(double lr_factor, int64_t training_step, const at::Tensor& apply) {
  XLTUNE_CHECK(!device_lr_.defined() || lr_factor == staged_lr_factor_, "ZeRO: the learning-rate factor staged (",
               staged_lr_factor_, ") is not the step's (", lr_factor, ")");
  XLTUNE_CHECK(!gathers_deferred_, "ZeRO: a step with the all-gathers of the one before not started");
  wait_parameters();  // a step right after another, with no forward between (tests)
  at::NoGradGuard no_grad;
  at::Tensor found_inf;
  if (!count_step(apply, &found_inf)) return;  // the foreach kernel read a verdict of 0
  // The key of the step's rounding bits: staged before (outside a capture) where the learning
  // rates are (the Trainer's steps, which may be captured; Optimizer::stage_training_step).
  if (state_dtype_ == at::kBFloat16 && (!rounding_key_.defined() || staged_training_step_ != training_step)) {
    XLTUNE_CHECK(!device_lr_.defined(), "ZeRO: step ", training_step,
                 " with device learning rates: its rounding key must be staged before (stage_training_step)");
    stage_training_step(training_step);
  }
  // AdamW's update of the chunks, a group of buckets (up to kUpdateGroupValues values) at once
  // (adamw_foreach_update: one multi-tensor kernel per line on a GPU, the single-tensor kernels
  // on the CPU; or adamw_fused_update, every bucket reading the one device step count), element
  // for element the replicated AdamW's with the same kernel. The group bounds the temporaries
  // (the denominators; fp32 copies of bf16 moments) to a few hundred MB. Each group's all-gathers
  // start as soon as it is updated, in the order the next forward needs the buckets (the last
  // bucket, the UNet's stem, first), none waited for here: before_forward_block waits for each
  // just before its block runs, wait_parameters for all. With defer_parameter_exchange(true)
  // they start later, all at once (start_parameter_exchange).
  size_t first = 0;
  int64_t values = 0;
  for (size_t i = 0; i < gather_order_.size(); ++i) {
    values += buckets_[gather_order_[i]]->chunk;
    if (values >= kUpdateGroupValues || i + 1 == gather_order_.size()) {
      update_group(first, i + 1, lr_factor, training_step, found_inf);
      if (!defer_gathers_) start_gathers(first, i + 1);
      first = i + 1;
      values = 0;
    }
  }
  gathers_deferred_ = defer_gathers_;
  if (!defer_gathers_ && !overlap_gather_) wait_parameters();
}

void ZeroOptimizer::update_group(size_t first, size_t end, double lr_factor, int64_t training_step,
                                 const at::Tensor& found_inf) {
  const int64_t r = comm_.rank();
  const bool bf16 = state_dtype_ == at::kBFloat16;
  // With a bf16 all-gather the update is of the fp32 master; the bucket's own chunk is then
  // overwritten by its rounding, like the others'.
  std::vector<at::Tensor> p, g, m, v;
  for (size_t i = first; i < end; ++i) {
    Bucket& b = *buckets_[gather_order_[i]];
    p.push_back(b.master.defined() ? b.master : b.param.narrow(0, r * b.chunk, b.chunk));
    g.push_back(b.chunk_grad);
    m.push_back(bf16 ? b.exp_avg.to(at::kFloat) : b.exp_avg);
    v.push_back(bf16 ? b.exp_avg_sq.to(at::kFloat) : b.exp_avg_sq);
  }
  if (kernel_ == AdamWKernel::kFused && device_lr_.defined())
    adamw_fused_update(hyper_, device_lr_, p, g, m, v, std::vector<at::Tensor>(p.size(), device_step_), found_inf);
  else if (kernel_ == AdamWKernel::kFused)
    adamw_fused_update(hyper_, hyper_.lr * lr_factor, p, g, m, v, std::vector<at::Tensor>(p.size(), device_step_),
                       found_inf);
  else
    adamw_foreach_update(hyper_, hyper_.lr * lr_factor, p, g, m, v, std::vector<int64_t>(p.size(), steps_));
  if (!bf16) return;
  // Note [Rounding bits from a keyed hash] (adamw.cc): one hash over the group's chunks, which
  // lie side by side in the shard (the group is buckets gather_order_[first, end), descending).
  const size_t lowest = gather_order_[end - 1], highest = gather_order_[first];
  const int64_t start = shard_offset_[lowest];
  XLTUNE_CHECK(staged_training_step_ == training_step, "ZeRO: the rounding key of step ", staged_training_step_,
               " is staged, not step ", training_step, "'s");
  auto [noise_m, noise_v] = rounding_noise_of(
      keyed_rounding_bits(rounding_key_, start, shard_offset_[highest] + buckets_[highest]->chunk - start));
  for (size_t i = first; i < end; ++i) {
    Bucket& b = *buckets_[gather_order_[i]];
    const int64_t offset = shard_offset_[gather_order_[i]] - start;
    b.exp_avg.copy_(stochastic_round_with_noise(m[i - first], noise_m.narrow(0, offset, b.chunk)));
    b.exp_avg_sq.copy_(stochastic_round_with_noise(v[i - first], noise_v.narrow(0, offset, b.chunk)));
  }
}

void ZeroOptimizer::stage_training_step(int64_t training_step) {
  if (state_dtype_ != at::kBFloat16) return;
  if (!rounding_key_.defined())
    rounding_key_ = at::zeros({}, buckets_.front()->param.options().dtype(at::kLong));
  rounding_key_.fill_(static_cast<int64_t>(draw_key(seed_, static_cast<uint64_t>(training_step),
                                                    static_cast<uint64_t>(comm_.rank()), DrawKind::kShardRounding)));
  staged_training_step_ = training_step;
}

void ZeroOptimizer::start_gathers(size_t first, size_t end) {
  at::NoGradGuard no_grad;
  const int64_t r = comm_.rank();
  if (first == 0) gathered_ = 0;
  for (size_t i = first; i < end; ++i) {
    Bucket& b = *buckets_[gather_order_[i]];
    if (b.master.defined()) {
      // Arriving in the gradient bucket, whose values the update above has read and which
      // before_backward would clear anyway: no bf16 buffer of 2 B per parameter.
      b.staged = b.grad.view(at::kBFloat16).narrow(0, 0, b.chunk * comm_.size());
      at::Tensor mine = b.staged.narrow(0, r * b.chunk, b.chunk);
      mine.copy_(b.master);
      b.gather = comm_.start_all_gather(mine, b.staged);
    } else {
      b.gather = comm_.start_all_gather(b.param.narrow(0, r * b.chunk, b.chunk), b.param);
    }
  }
}

void ZeroOptimizer::start_parameter_exchange() {
  if (!gathers_deferred_) return;  // no deferred step, or the foreach kernel's verdict of 0
  gathers_deferred_ = false;
  start_gathers(0, gather_order_.size());
  if (!overlap_gather_) wait_parameters();
}

std::string ZeroOptimizer::capture_blocker() const {
  if (kernel_ != AdamWKernel::kFused) return "the foreach AdamW kernel reads the verdict and step count on the host";
  if (!device_step_.defined() || !device_lr_.defined())
    return "ZeRO-1's device step count and learning rate are made by its first step";
  return "";
}

void ZeroOptimizer::replayed_step() {
  XLTUNE_CHECK(pending_steps_ < 2, "ZeRO: a replayed step with two steps unsettled");
  ++pending_steps_;  // what count_step did on the host when the step was captured (fused, a verdict)
  gathers_deferred_ = defer_gathers_;
}

void ZeroOptimizer::replayed_backward() {
  // The captured backward reached every tensor: finish() checked it when it was captured.
  got_grad_.assign(params_.size(), true);
}

void ZeroOptimizer::settle(bool applied) {
  if (pending_steps_ == 0) return;  // the foreach kernel counted at step()
  --pending_steps_;
  if (applied) ++steps_;
}

void ZeroOptimizer::take_parameters(const std::map<std::string, at::Tensor>& masters) {
  at::NoGradGuard no_grad;
  const int64_t r = comm_.rank();
  bool any_master = false;
  for (const auto& item : masters) {
    const std::string& name = item.first;
    if (name.size() > 7 && name.compare(name.size() - 7, 7, ".master") == 0) any_master = true;
  }
  for (auto& b : buckets_) {
    if (!b->master.defined() && !any_master) continue;  // fp32 all-gather, fp32 checkpoint: nothing to do
    bool given = false;
    at::Tensor full = b->param.clone();  // the padding as it is (zeros)
    for (size_t j : b->members) {
      auto it = masters.find(names_[j] + ".master");
      if (it == masters.end()) continue;
      XLTUNE_CHECK(it->second.numel() == params_[j].numel(), "checkpoint: ", names_[j], ".master has ",
                   it->second.numel(), " values, the tensor ", params_[j].numel());
      full.narrow(0, offset_of_[j], params_[j].numel()).copy_(it->second.flatten());
      given = true;
    }
    if (b->master.defined()) {
      b->master.copy_(full.narrow(0, r * b->chunk, b->chunk));
      b->param.copy_(full.to(at::kBFloat16));  // the same values on every rank: the replicas agree
    } else if (given) {
      b->param.copy_(full);  // an fp32 all-gather continues from a bf16 one's masters
    }
  }
}

void ZeroOptimizer::zero_grad() {
  for (auto& p : params_) p.mutable_grad() = at::Tensor();
}

NamedTensors ZeroOptimizer::shard_state() const {
  NamedTensors out;
  for (size_t k = 0; k < buckets_.size(); ++k) {
    out.emplace_back("zero." + std::to_string(k) + ".exp_avg", buckets_[k]->exp_avg.detach().cpu().contiguous());
    out.emplace_back("zero." + std::to_string(k) + ".exp_avg_sq", buckets_[k]->exp_avg_sq.detach().cpu().contiguous());
  }
  for (size_t k = 0; k < buckets_.size(); ++k)
    if (buckets_[k]->master.defined())
      out.emplace_back("zero." + std::to_string(k) + ".master", buckets_[k]->master.detach().cpu().contiguous());
  out.emplace_back("zero.steps", at::tensor({steps_}, at::kLong));
  return out;
}

std::string ZeroOptimizer::layout_json() const {
  nlohmann::json buckets = nlohmann::json::array();
  for (const auto& b : buckets_) {
    nlohmann::json members = nlohmann::json::array();
    for (size_t j : b->members) members.push_back({names_[j], params_[j].numel()});
    buckets.push_back(members);
  }
  return nlohmann::json({{"world", comm_.size()}, {"rank", comm_.rank()}, {"buckets", buckets}}).dump();
}

std::map<std::string, at::Tensor> ZeroOptimizer::full_moments_from_shards(
    const std::vector<std::pair<std::map<std::string, at::Tensor>, std::string>>& shards, int64_t* steps) {
  XLTUNE_CHECK(!shards.empty(), "ZeRO: no optimizer shards");
  const nlohmann::json layout = nlohmann::json::parse(shards.front().second);
  const int64_t W = layout.at("world").get<int64_t>();
  XLTUNE_CHECK(static_cast<int64_t>(shards.size()) == W, "ZeRO: ", shards.size(), " shard files for a world of ", W);
  std::vector<const std::map<std::string, at::Tensor>*> by_rank(static_cast<size_t>(W), nullptr);
  for (const auto& [tensors, json] : shards) {
    const int64_t r = nlohmann::json::parse(json).at("rank").get<int64_t>();
    XLTUNE_CHECK(r >= 0 && r < W && by_rank[static_cast<size_t>(r)] == nullptr, "ZeRO: shard of rank ", r, " twice");
    by_rank[static_cast<size_t>(r)] = &tensors;
  }
  *steps = by_rank[0]->at("zero.steps").item<int64_t>();
  std::map<std::string, at::Tensor> out;
  const auto& buckets = layout.at("buckets");
  const bool masters = by_rank[0]->count("zero.0.master") > 0;  // a bf16 all-gather's shards
  for (size_t k = 0; k < buckets.size(); ++k) {
    for (const char* which : {"exp_avg", "exp_avg_sq", "master"}) {
      if (std::string(which) == "master" && !masters) continue;
      std::vector<at::Tensor> parts;
      for (int64_t r = 0; r < W; ++r) {
        auto it = by_rank[static_cast<size_t>(r)]->find("zero." + std::to_string(k) + "." + which);
        XLTUNE_CHECK(it != by_rank[static_cast<size_t>(r)]->end(), "ZeRO: rank ", r, "'s shard has no bucket ", k);
        parts.push_back(it->second.to(at::kFloat));
      }
      at::Tensor flat = at::cat(parts);
      int64_t offset = 0;
      for (const auto& m : buckets[k]) {
        const std::string name = m.at(0).get<std::string>();
        const int64_t numel = m.at(1).get<int64_t>();
        out[name + "." + which] = flat.narrow(0, offset, numel).clone();
        offset += numel;
      }
    }
  }
  return out;
}

void ZeroOptimizer::load_full_moments(const std::map<std::string, at::Tensor>& moments, int64_t steps) {
  wait_parameters();
  at::NoGradGuard no_grad;
  steps_ = steps;
  device_step_ = kernel_ == AdamWKernel::kFused
                     ? at::full({}, static_cast<double>(steps),
                                at::TensorOptions().dtype(at::kFloat).device(buckets_.front()->param.device()))
                     : at::Tensor();
  const int64_t r = comm_.rank();
  for (auto& b : buckets_) {
    for (int which = 0; which < 2; ++which) {
      const char* suffix = which == 0 ? ".exp_avg" : ".exp_avg_sq";
      at::Tensor full = at::zeros({b->chunk * comm_.size()}, at::kFloat);  // the padding stays 0
      if (steps > 0) {
        for (size_t j : b->members) {
          auto it = moments.find(names_[j] + suffix);
          XLTUNE_CHECK(it != moments.end() && it->second.numel() == params_[j].numel(), "checkpoint: no ", suffix + 1,
                       " moments for ", names_[j]);
          full.narrow(0, offset_of_[j], params_[j].numel()).copy_(it->second.flatten());
        }
      }
      (which == 0 ? b->exp_avg : b->exp_avg_sq).copy_(full.narrow(0, r * b->chunk, b->chunk));
    }
  }
  take_parameters(moments);
}

}  // namespace xltune
