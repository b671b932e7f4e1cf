#include "train/trainer.h"

#include <ATen/ATen.h>
#include <fnmatch.h>

#include <algorithm>
#include <array>

#include "core/check.h"
#include "core/keyed_random.h"
#include "core/log.h"
#include "dist/communicator.h"
#include "dist/gradient_reducer.h"
#include "train/autocast_scope.h"
#include "train/graphed_step.h"
#include "train/step_capture.h"
#include "train/zero_optimizer.h"

namespace xltune {

namespace {

double table_std(const ClipTextModel& te) {
  at::NoGradGuard no_grad;
  return te->token_embedding->weight.to(at::kFloat).std().item<double>();
}

// Note [Replicated stem under ZeRO-1]
// ZeRO-1 moves half of an all-reduce's bytes out of backward: the reduce-scatter runs there, the
// all-gather of the updated weights runs as the next forward starts (Note [Sharded optimizer
// state]). Full fine-tuning's backward is three forwards long (the weight and activation
// gradients and checkpointing's recompute), so backward has time to spare while the forward
// waits: on 8 A40s over PCIe the all-gather of 2.5 B bf16 weights takes 0.22 s against a 0.13 s
// forward (bench/scaling_model.py), 0.12 s of it exposed. Keeping the tensors the forward reads
// first replicated moves their share back: they are all-reduced in backward (at its end, where
// their gradients come last) and need no all-gather, so the forward starts at once and the gathers
// of the rest run behind it. The price is redundant work and memory: every rank updates the
// replicated tensors (after the sharded update, while its gathers are in flight: the sharded
// optimizer comes first in the Trainer's list) and holds their moments, 8 B per parameter (4 B
// with bf16 moments). A fraction f of the parameters (in forward order: by
// UNetImpl::block_index_of, then registration order; the tensor that crosses f included) is
// replicated; the model's shortest step on 8 A40s over PCIe at 1024² batch 1 is at f = 0.3
// (0.605 s against ZeRO-1's 0.651 s and the all-reduce's 0.766 s; 6 GB more moments per GPU); over
// NVLink nothing is exposed and f = 0 is best. The values are ZeRO-1's or replicated AdamW's,
// element for element (both run the same AdamW arithmetic), and checkpoints name the state by
// tensor, so a run resumes under any fraction on any number of ranks. With a bf16 all-gather only
// the sharded tensors hold bf16-valued weights; the replicated ones stay fp32.
void split_by_forward_order(const AdamWGroup& all, const std::vector<int>& block_of, double fraction,
                            AdamWGroup* replicated, AdamWGroup* sharded, std::vector<int>* sharded_blocks) {
  std::vector<size_t> order(all.params.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return block_of[a] < block_of[b]; });
  int64_t total = 0;
  for (const auto& p : all.params) total += p.numel();
  std::vector<bool> keep(all.params.size(), false);
  int64_t before = 0;
  for (size_t i : order) {
    keep[i] = static_cast<double>(before) < fraction * static_cast<double>(total);
    before += all.params[i].numel();
  }
  sharded->names.clear();
  sharded->params.clear();
  sharded_blocks->clear();
  for (size_t i = 0; i < all.params.size(); ++i) {  // each part in the group's own (registration) order
    AdamWGroup* part = keep[i] ? replicated : sharded;
    part->names.push_back(all.names[i]);
    part->params.push_back(all.params[i]);
    if (!keep[i]) sharded_blocks->push_back(block_of[i]);
  }
}

}  // namespace

bool Trainer::full_finetune_trains(const std::string& name) {
  // fnmatch without FNM_PATHNAME: '*' matches dots too, as Python's fnmatch does.
  return fnmatch("*.norm*.weight", name.c_str(), 0) != 0 && fnmatch("*time*", name.c_str(), 0) != 0;
}

Trainer::Trainer(SdxlModel& model, const TrainerConfig& config, double latent_scaling_factor,
                 std::shared_ptr<GradientReducer> reducer, OptimizerShards optimizer_shards)
    : model_(model),
      config_(config),
      scaling_factor_(latent_scaling_factor),
      reducer_(std::move(reducer)),
      schedule_(model.scheduler),
      guard_(config.grad_spike_factor),
      device_(model.unet->conv_in->weight.device()) {
  XLTUNE_CHECK(config.max_train_steps >= 1, "trainer: max_train_steps must be at least 1");
  XLTUNE_CHECK(config.pivot_step >= 0 && config.pivot_step <= config.max_train_steps,
               "trainer: the pivot step must lie in 0 .. max_train_steps");
  XLTUNE_CHECK(reducer_ != nullptr, "trainer: no gradient reducer");
  for (auto* module : {static_cast<torch::nn::Module*>(model.unet.get()), static_cast<torch::nn::Module*>(model.te1.get()),
                       static_cast<torch::nn::Module*>(model.te2.get())}) {
    for (auto& p : module->parameters()) p.requires_grad_(false);
  }
  std::vector<AdamWGroup> groups;
  if (config.is_lora) {
    lora_ = attach_lora(*model.unet, config.lora_rank, config.lora_alpha,
                        at::TensorOptions().dtype(at::kFloat).device(device_));
    lora_.initialize(config.seed);
    fuse_lora_projections(*model.unet, config.lora_fused_projections);
    lora_.set_product_dtype(config.lora_product_dtype);
    AdamWGroup g{"lora", AdamWHyper{config.lora_lr, 0.9, 0.999, 1e-8, 1e-4}, {}, {}, false};
    for (const auto& site : lora_.sites()) {
      const std::string base = "unet." + site.module + "." + site.projection;
      site.adapter->down.requires_grad_(true);
      site.adapter->up.requires_grad_(true);
      g.names.push_back(base + ".lora_A.weight");
      g.params.push_back(site.adapter->down);
      g.names.push_back(base + ".lora_B.weight");
      g.params.push_back(site.adapter->up);
    }
    groups.push_back(std::move(g));
  } else {
    XLTUNE_CHECK(model.unet->conv_in->weight.scalar_type() == at::kFloat,
                 "trainer: full fine-tuning trains the UNet in fp32 (load it in fp32; bf16 comes from autocast)");
    AdamWGroup g{"unet", AdamWHyper{config.unet_learning_rate, 0.9, 0.999, 1e-8, 1e-4}, {}, {}, false};
    for (const auto& item : model.unet->named_parameters(/*recurse=*/true)) {
      if (!full_finetune_trains(item.key())) continue;
      at::Tensor p = item.value();
      p.requires_grad_(true);
      unet_trainable_.emplace_back(item.key(), p);
      g.names.push_back("unet." + item.key());
      g.params.push_back(p);
    }
    std::vector<int> block_of;
    for (const auto& item : unet_trainable_) block_of.push_back(model.unet->block_index_of(item.first));
    AdamWGroup sharded{g.name, g.hyper, {}, {}, false};
    if (optimizer_shards.comm != nullptr && optimizer_shards.comm->size() > 1) {
      // Note [Replicated stem under ZeRO-1]: the forward's first tensors stay with the replicated
      // AdamW (all-reduced), the rest are sharded.
      AdamWGroup replicated{"unet_replicated", g.hyper, {}, {}, false};
      std::vector<int> sharded_blocks;
      split_by_forward_order(g, block_of, optimizer_shards.replicated_fraction, &replicated, &sharded,
                             &sharded_blocks);
      if (!replicated.params.empty()) groups.push_back(std::move(replicated));
      block_of = std::move(sharded_blocks);
    } else {
      groups.push_back(std::move(g));
    }
    sharded_ = !sharded.params.empty();
    if (sharded_) {
      auto zero = std::make_unique<ZeroOptimizer>(sharded.names, sharded.params, sharded.hyper,
                                                  *optimizer_shards.comm, config.optimizer_state_dtype, config.seed,
                                                  int64_t{25} << 20, int64_t{1} << 20, optimizer_shards.reduce_dtype,
                                                  optimizer_shards.gather_dtype, config.adamw_kernel);
      // Note [Sharded optimizer state]: each bucket's all-gather waited for just before the first
      // UNet block that reads it.
      zero->set_forward_order(block_of);
      optimizers_.push_back(std::move(zero));
    }
  }
  model.unet->set_gradient_checkpointing(config.gradient_checkpointing);

  // New token rows, each encoder from its own keyed generator.
  const double std_1 = table_std(model.te1), std_2 = table_std(model.te2);
  at::Tensor rows_1 = model.te1->add_new_tokens(config.num_new_tokens,
                                               keyed_generator(config.seed, 0, 0, DrawKind::kTokenRowsInit));
  at::Tensor rows_2 = model.te2->add_new_tokens(config.num_new_tokens,
                                               keyed_generator(config.seed, 0, 1, DrawKind::kTokenRowsInit));
  pivotal_ = std::make_unique<PivotalTuning>(rows_1, rows_2, std_1, std_2, config.pivot_step);
  groups.push_back(AdamWGroup{"text_embeddings", AdamWHyper{config.ti_lr, 0.9, 0.999, 1e-8, 1e-3},
                              {"text_encoders_0", "text_encoders_1"}, {rows_1, rows_2}, false});
  optimizers_.push_back(std::make_unique<AdamW>(std::move(groups), config.optimizer_state_dtype, config.seed,
                                                config.adamw_kernel));
  if (config.pivot_step == 0) freeze_token_rows();
  reducer_->prepare(reduced_tensors());
  if (config.use_ema) ema_ = std::make_unique<ParameterEma>(unet_trained(), config.ema_decay);
  set_up_device_learning_rates();
  set_up_step_graph();
  if (sharded_) {  // last: the destructor unhooks it
    model.unet->set_before_block([this](int block) {
      for (auto& o : optimizers_) o->before_forward_block(block);
    });
  }
}

Trainer::~Trainer() {
  if (model_.unet) model_.unet->set_before_block(nullptr);
  optimizers_.clear();  // a sharded optimizer unhooks the UNet's tensors before LoRA goes
  if (config_.is_lora && model_.unet) detach_lora(*model_.unet);
}

std::vector<at::Tensor> Trainer::reduced_tensors() const {
  std::vector<at::Tensor> out;
  for (const auto& o : optimizers_) {
    std::vector<at::Tensor> part = o->reduced_tensors();
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

int64_t Trainer::optimizer_state_bytes() const {
  int64_t n = 0;
  for (const auto& o : optimizers_) n += o->state_bytes();
  return n;
}

int64_t Trainer::trainable_parameter_count() const {
  int64_t n = 0;
  for (const auto& o : optimizers_) n += o->parameter_count();
  return n;
}

std::vector<GroupSummary> Trainer::groups() const {
  std::vector<GroupSummary> out;
  for (const auto& o : optimizers_)
    for (auto& s : o->summaries()) out.push_back(std::move(s));
  return out;
}

void Trainer::wait_parameters() const {
  for (const auto& o : optimizers_) o->wait_parameters();
}

std::optional<RankOptimizerState> Trainer::rank_optimizer_state() const {
  require_settled("rank_optimizer_state");
  wait_parameters();  // every rank, at the same point: before rank 0 alone reads the weights
  for (const auto& o : optimizers_)
    if (auto state = o->rank_state()) return state;
  return std::nullopt;
}

void Trainer::freeze_token_rows() {
  if (rows_frozen_) return;
  for (int i = 0; i < 2; ++i) {
    at::Tensor rows = pivotal_->rows(i);
    rows.mutable_grad() = at::Tensor();
    rows.requires_grad_(false);
  }
  for (auto& o : optimizers_) o->set_frozen("text_embeddings", true);
  rows_frozen_ = true;
  if (reducer_) reducer_->prepare(reduced_tensors());
}

NamedTensors Trainer::trainable_state() const { return named_trainable(/*copy=*/true); }

NamedTensors Trainer::named_trainable(bool copy) const {
  wait_parameters();
  NamedTensors out;
  at::NoGradGuard no_grad;
  const auto cpu = [copy](const at::Tensor& p) {
    at::Tensor t = p.detach().to(at::kCPU, at::kFloat);
    return copy && t.data_ptr() == p.data_ptr() ? t.clone() : t.contiguous();
  };
  for (const auto& o : optimizers_)
    for (const auto& [name, p] : o->named_parameters()) out.emplace_back(name, cpu(p));
  return out;
}

NamedTensors Trainer::checkpoint_tensors() const {
  require_settled("checkpoint_tensors");
  NamedTensors out = named_trainable(/*copy=*/false);  // written at once, while training waits
  for (const auto& o : optimizers_)
    for (auto& item : o->state_tensors()) out.push_back(std::move(item));
  for (auto& item : guard_.state_tensors()) out.push_back(std::move(item));
  if (ema_)
    for (auto& item : ema_->state_tensors()) out.push_back(std::move(item));
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> Trainer::unet_trained() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& o : optimizers_)
    for (auto& [name, p] : o->named_parameters())
      if (name.compare(0, 5, "unet.") == 0) out.emplace_back(name, p);
  return out;
}

void Trainer::restore(const std::map<std::string, at::Tensor>& tensors, int64_t completed_steps) {
  require_settled("restore");
  XLTUNE_CHECK(completed_steps >= 0 && completed_steps <= config_.max_train_steps, "checkpoint: step ",
               completed_steps, " outside 0 .. ", config_.max_train_steps);
  at::NoGradGuard no_grad;
  wait_parameters();  // no all-gather may land over the restored values
  for (const auto& o : optimizers_) {
    for (auto [name, p] : o->named_parameters()) {
      // A ZeRO-1 checkpoint with a bf16 all-gather holds bf16-valued weights and, in its shards, the
      // fp32 masters (Note [Sharded optimizer state]): any setup continues from the masters.
      // The masters come flat from the shards (their layout holds names and sizes only).
      auto it = tensors.find(name + ".master");
      const bool master = it != tensors.end();
      if (!master) it = tensors.find(name);
      XLTUNE_CHECK(it != tensors.end(), "checkpoint: no tensor '", name, "' (a checkpoint of another setup?)");
      XLTUNE_CHECK(master ? it->second.numel() == p.numel() : it->second.sizes() == p.sizes(), "checkpoint: ", name,
                   " is ", it->second.sizes(), ", this run's is ", p.sizes());
      p.copy_(master ? it->second.view(p.sizes()) : it->second);
    }
    o->load_state(tensors);
  }
  guard_.load_state(tensors, completed_steps);
  if (ema_) ema_->load_state(tensors);
  drop_step_graphs();  // the optimizer state is new tensors: a graph would update the old ones
  if (completed_steps >= pivotal_->pivot_step()) freeze_token_rows();
  text_cache_ = TextConditioningCache();
}

std::pair<at::Tensor, at::Tensor> Trainer::text_conditioning(const StepBatch& batch, bool trains_rows, bool* ran) {
  auto encode = [&](const at::Tensor& ids_1, const at::Tensor& ids_2) {
    ClipTextOutput a = model_.te1->forward(ids_1);
    ClipTextOutput b = model_.te2->forward(ids_2);
    return std::make_pair(at::cat({a.penultimate, b.penultimate}, -1), b.text_embeds);
  };
  const int64_t b = batch.input_ids_1.size(0);
  XLTUNE_CHECK(static_cast<int64_t>(batch.caption_keys.size()) == b, "trainer: ", batch.caption_keys.size(),
               " caption keys for ", b, " samples");
  if (trains_rows) {
    // Each distinct caption is encoded once and its conditioning shared by the samples that
    // have it (gradients add up through the index): with the default captions (the prefix
    // alone) a whole batch costs one encoder pass.
    *ran = true;
    std::vector<int64_t> first_of, row_of;
    for (int64_t i = 0; i < b; ++i) {
      int64_t j = 0;
      while (j < static_cast<int64_t>(first_of.size()) && batch.caption_keys[first_of[j]] != batch.caption_keys[i]) ++j;
      if (j == static_cast<int64_t>(first_of.size())) first_of.push_back(i);
      row_of.push_back(j);
    }
    if (static_cast<int64_t>(first_of.size()) == b) return encode(batch.input_ids_1, batch.input_ids_2);
    const auto dev = batch.input_ids_1.device();
    at::Tensor unique = at::tensor(first_of, at::TensorOptions().dtype(at::kLong)).to(dev);
    auto [context, pooled] = encode(batch.input_ids_1.index_select(0, unique), batch.input_ids_2.index_select(0, unique));
    at::Tensor expand = at::tensor(row_of, at::TensorOptions().dtype(at::kLong)).to(dev);
    return {context.index_select(0, expand), pooled.index_select(0, expand)};
  }
  // Frozen encoders: each caption's conditioning is computed once (Note [Pivotal tuning]).
  std::vector<int64_t> missing;
  for (int64_t i = 0; i < b; ++i) {
    const int64_t key = batch.caption_keys[i];
    if (!text_cache_.contains(key) &&
        std::find_if(missing.begin(), missing.end(), [&](int64_t j) { return batch.caption_keys[j] == key; }) ==
            missing.end())
      missing.push_back(i);
  }
  if (!missing.empty()) {
    *ran = true;
    at::NoGradGuard no_grad;
    // One caption at a time: the cached values then do not depend on which batch first needed
    // them, so a resumed run caches the very same values as an uninterrupted one.
    for (int64_t i : missing) {
      auto [context, pooled] = encode(batch.input_ids_1.slice(0, i, i + 1), batch.input_ids_2.slice(0, i, i + 1));
      text_cache_.put(batch.caption_keys[i], context[0].clone(), pooled[0].clone());
    }
  }
  std::vector<at::Tensor> contexts, pooleds;
  for (int64_t i = 0; i < b; ++i) {
    const auto& entry = text_cache_.get(batch.caption_keys[i]);
    contexts.push_back(entry.first);
    pooleds.push_back(entry.second);
  }
  return {at::stack(contexts), at::stack(pooleds)};
}

at::Tensor Trainer::loss_of(const at::Tensor& pred, const at::Tensor& target, const at::Tensor& mask,
                            const at::Tensor& t) const {
  at::Tensor sq = (pred.to(at::kFloat) - target).pow(2) * mask;
  at::Tensor loss;
  if (config_.snr_gamma > 0) {
    // Min-SNR-gamma (Hang et al. 2023) as diffusers' scripts weigh it.
    at::Tensor snr = schedule_.snr(t);
    at::Tensor weight = at::minimum(snr, at::full_like(snr, config_.snr_gamma));
    weight = schedule_.config().prediction_type == PredictionType::kEpsilon ? weight / snr : weight / (snr + 1);
    loss = (sq.mean({1, 2, 3}) * weight).mean();
  } else {
    loss = sq.mean();
  }
  return loss;
}

std::vector<int64_t> Trainer::validation_timesteps() const {
  const int64_t T = schedule_.num_train_timesteps();
  std::vector<int64_t> out;
  for (int64_t k = 0; k < kValidationTimesteps; ++k) out.push_back((2 * k + 1) * T / (2 * kValidationTimesteps));
  return out;
}

double Trainer::validation_loss_term(const StepBatch& images, int64_t i, int64_t k) const {
  XLTUNE_CHECK(i >= 0 && i < images.latent_mean.size(0) && k >= 0 && k < kValidationTimesteps,
               "trainer: validation loss term (", i, ", ", k, ") outside ", images.latent_mean.size(0), " images x ",
               kValidationTimesteps, " timesteps");
  at::NoGradGuard no_grad;
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor mean = images.latent_mean.slice(0, i, i + 1), logvar = images.latent_logvar.slice(0, i, i + 1);
  const auto shape = mean.sizes();
  const uint64_t slot = static_cast<uint64_t>(k), image = static_cast<uint64_t>(i);
  at::Generator gn = keyed_generator(config_.seed, slot, image, DrawKind::kValidationLatentSample);
  const at::Tensor n = at::randn(shape, gn, f32);
  at::Generator ge = keyed_generator(config_.seed, slot, image, DrawKind::kValidationNoise);
  const at::Tensor noise = at::randn(shape, ge, f32).to(device_);
  const at::Tensor t = at::full({1}, validation_timesteps()[static_cast<size_t>(k)], at::TensorOptions().dtype(at::kLong))
                           .to(device_);
  const at::Tensor x0 = (mean + at::exp(0.5 * logvar) * n.to(device_)) * scaling_factor_;
  // The text: cached when training has cached this caption (frozen encoders), else encoded alone
  // as the cache would encode it; the same values either way, and the cache stays training's.
  at::Tensor context, pooled;
  const int64_t key = images.caption_keys.at(static_cast<size_t>(i));
  if (rows_frozen_ && text_cache_.contains(key)) {
    const auto& entry = text_cache_.get(key);
    context = entry.first.unsqueeze(0), pooled = entry.second.unsqueeze(0);
  } else {
    ClipTextOutput a = model_.te1->forward(images.input_ids_1.slice(0, i, i + 1));
    ClipTextOutput b = model_.te2->forward(images.input_ids_2.slice(0, i, i + 1));
    context = at::cat({a.penultimate, b.penultimate}, -1), pooled = b.text_embeds;
  }
  const at::Tensor x_t = schedule_.add_noise(x0, noise, t);
  const at::Tensor target = schedule_.target(x0, noise, t);
  const at::ScalarType dt = model_.unet->conv_in->weight.scalar_type();
  at::Tensor pred;
  {
    AutocastScope autocast(config_.autocast_bf16);
    pred = model_.unet->forward(x_t.to(dt), t, context.to(dt), pooled.to(dt),
                                images.add_time_ids.slice(0, i, i + 1).to(dt));
  }
  // The plain masked MSE in fp32, as loss_of without --snr_gamma.
  return ((pred.to(at::kFloat) - target).pow(2) * images.mask.slice(0, i, i + 1)).mean().item<double>();
}

at::Tensor Trainer::clip_gradients() {
  at::NoGradGuard no_grad;
  for (auto& o : optimizers_) o->local_grad_norms();
  for (auto& o : optimizers_) o->exchange_grad_norms();
  return clip_to_exchanged_norms();
}

at::Tensor Trainer::clip_to_exchanged_norms() {
  // Global norm over every trainable tensor, as torch.nn.utils.clip_grad_norm_: the norm of the
  // optimizers' norms (a sharded one's covers all ranks' shards).
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> norms;
  for (auto& o : optimizers_) o->add_grad_norms(norms);
  if (norms.empty()) return at::zeros({}, at::TensorOptions().dtype(at::kFloat).device(device_));
  at::Tensor total = at::linalg_vector_norm(at::stack(norms), 2);
  at::Tensor coef = at::clamp_max(config_.max_grad_norm / (total + 1e-6), 1.0);
  for (auto& o : optimizers_) o->scale_grads(coef);
  return total;
}

StepResult Trainer::step(int64_t step, const StepBatch& batch) {
  return this->step(step, std::vector<StepBatch>{batch});
}

at::Tensor Trainer::forward_backward(int64_t step, const StepBatch& batch, bool trains_rows, double weight,
                                     StepResult& result) {
  // Draws (Note [Keyed draws]), on the CPU (the batch's positions checked), then to the device in one copy.
  const StepDraws d = draw(step, batch);
  const std::array<at::Tensor, 3> on_device =
      draws_to_device({d.latent_sample, d.noise, d.timesteps}, device_, !device_.is_cpu());
  const at::Tensor &latent_sample = on_device[0], &noise = on_device[1], &t = on_device[2];
  at::Tensor x0 = (batch.latent_mean + at::exp(0.5 * batch.latent_logvar) * latent_sample) * scaling_factor_;
  mark("draws");

  auto [context, pooled] = text_conditioning(batch, trains_rows, &result.text_encoders_ran);
  mark("text");
  at::Tensor x_t = schedule_.add_noise(x0, noise, t);
  at::Tensor target = schedule_.target(x0, noise, t);
  const at::ScalarType dt = model_.unet->conv_in->weight.scalar_type();
  at::Tensor pred;
  {
    AutocastScope autocast(config_.autocast_bf16);
    pred = model_.unet->forward(x_t.to(dt), t, context.to(dt), pooled.to(dt), batch.add_time_ids.to(dt));
  }
  wait_parameters();  // the forward waited block by block (Note [Forward block hook]); backward needs all
  const at::Tensor loss = loss_of(pred, target, batch.mask, t);
  mark("forward");
  if (weight == 1.0) {
    loss.backward();
  } else {
    (loss * weight).backward();
  }
  const auto append = [](at::Tensor& all, const at::Tensor& part) { all = all.defined() ? at::cat({all, part}) : part; };
  append(result.x0, x0.detach());  // on the device: read only by a step dump
  append(result.noise, d.noise);
  append(result.timesteps, d.timesteps);
  return loss.detach();
}

}  // namespace xltune
