#include "job/train_job.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <signal.h>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/crc32c.h"
#include "core/data_files.h"
#include "core/log.h"
#include "core/memory_stats.h"
#include "core/state_dict.h"
#include "data/captions.h"
#include "data/hdf5_shards.h"
#include "data/latent_cache_file.h"
#include "data/sampler.h"
#include "dist/communicator.h"
#include "dist/bucketed_reducer.h"
#include "dist/gradient_reducer.h"
#ifdef XLTUNE_HAVE_NCCL
#include "dist/nccl_communicator.h"
#endif
#include "job/checkpoint.h"
#include "job/fault_hooks.h"
#include "job/loss_plot.h"
#include "job/job_devices.h"
#include "job/preprocess_models.h"
#include "job/stop_signal.h"
#include "job/validation.h"
#include "job/progress.h"
#include "job/run_identity.h"
#include "job/run_outputs.h"
#include "job/step_dump.h"
#include "job/training_set.h"
#include "train/export.h"
#include "train/trainer.h"
#include "train/zero_optimizer.h"

namespace fs = std::filesystem;

namespace xltune {

namespace {

using Clock = std::chrono::steady_clock;

// Files of a finished run; an earlier run's are removed before a new one starts.
const char* const kRunOutputs[] = {"trained_model.tar", "trainer_state.safetensors", "lora.safetensors",
                                   "lora_kohya.safetensors", "unet.safetensors", "embeddings.pti",
                                   "embeddings_sdxl.safetensors", "special_params.json", "loss.png",
                                   "metrics.jsonl", "run_config.json"};


// The latent slices of every rank, back in shard order.
LatentCache in_shard_order(LatentCache c) {
  const size_t n = c.key.samples.size(), per = static_cast<size_t>(c.channels * c.height * c.width);
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return c.key.samples[a] < c.key.samples[b]; });
  LatentCache out = c;
  for (size_t k = 0; k < n; ++k) {
    out.key.samples[k] = c.key.samples[order[k]];
    std::copy_n(c.mean.begin() + order[k] * per, per, out.mean.begin() + k * per);
    std::copy_n(c.logvar.begin() + order[k] * per, per, out.logvar.begin() + k * per);
  }
  for (size_t k = 0; k < n; ++k)
    XLTUNE_CHECK(out.key.samples[k] == k, "latent cache: sample ", k, " is missing from every rank's slice");
  return out;
}

// --replica_check_steps: every rank must hold rank 0's trainable tensors, bit for bit.
void check_replicas(Communicator& comm, const Trainer& trainer, int64_t step) {
  if (comm.size() == 1) return;
  for (const auto& [name, t] : trainer.trainable_state()) {
    at::Tensor theirs = t.clone();
    comm.broadcast(theirs, 0);
    XLTUNE_CHECK(at::equal(theirs, t), "step ", step, ": rank ", comm.rank(), " holds another ", name, " than rank 0 (",
                 "max difference ", (theirs - t).abs().max().item<double>(), "): the replicas have drifted apart");
  }
  log_debug("step ", step, ": every rank holds the same trainable tensors");
}

at::ScalarType dtype_of(const std::string& name) {
  if (name == "fp32") return at::kFloat;
  if (name == "fp16") return at::kHalf;
  return at::kBFloat16;
}

}  // namespace

TrainJobReport run_train_job(const TrainOptions& options, const std::string& options_json, Communicator& comm) {
  const auto start = Clock::now();
  TrainOptions o = options;
  validate_train_options(o);
  TrainJobReport report;
  report.output_dir = o.output_dir;
  const bool rank0 = comm.rank() == 0;
  const int world = comm.size();
  if (o.threads > 0) at::set_num_threads(o.threads);
  const at::Device device = resolve_device(o.device, comm.local_rank());
  if (device.is_cuda()) {
    // TF32 for the fp32 matmuls and convolutions that remain (the trainable parts).
    at::globalContext().setAllowTF32CuBLAS(true);
    at::globalContext().setAllowTF32CuDNN(true);
  }
  install_stop_handlers();

  // 0. Resuming? (Note [Checkpoints]) Rank 0 finds and verifies the checkpoint; every rank
  //    then reads the same one. Its seed and pivot are the run's.
  const std::string ckpt_root = o.output_dir + "/checkpoints";
  std::optional<CheckpointInfo> resume;
  double checked_seconds = 0;  // rank 0's checksums of the checkpoint it resumes from
  {
    int64_t found_step = -1;
    std::string found_dir;
    const auto checking = Clock::now();
    if (rank0 && o.resume != "none") {
      std::optional<CheckpointInfo> c =
          o.resume == "auto" ? find_checkpoint(ckpt_root) : std::optional<CheckpointInfo>(open_checkpoint(o.resume));
      if (c) found_step = c->step, found_dir = c->dir;
      if (c) checked_seconds = std::chrono::duration<double>(Clock::now() - checking).count();
    }
    if (world > 1) {
      at::Tensor t = at::tensor({found_step}, at::kLong);
      comm.broadcast(t, 0);
      found_step = t.item<int64_t>();
    }
    if (found_step >= 0) {
      if (!rank0) found_dir = o.resume == "auto" || o.resume.empty() ? ckpt_root + "/" + checkpoint_name(found_step) : o.resume;
      nlohmann::json m = nlohmann::json::parse(read_file(found_dir + "/manifest.json"));
      resume = CheckpointInfo{found_dir, found_step, m};
      XLTUNE_CHECK(m.contains("meaning"), found_dir, ": the manifest has no run meaning");
      if (o.seed) {
        XLTUNE_CHECK(m["meaning"]["seed"].get<uint64_t>() == *o.seed, "--seed ", *o.seed, ": the checkpoint in ",
                     found_dir, " was made with seed ", m["meaning"]["seed"].get<uint64_t>());
      }
      o.seed = m["meaning"]["seed"].get<uint64_t>();
    }
  }

  uint64_t seed = o.seed ? *o.seed : std::random_device{}();
  if (!o.seed && world > 1) {  // rank 0's, for every rank
    at::Tensor shared = at::tensor({static_cast<int64_t>(seed & 0x7FFFFFFFFFFFFFFFULL)}, at::kLong);
    comm.broadcast(shared, 0);
    seed = static_cast<uint64_t>(shared.item<int64_t>());
  }
  if (!o.seed && rank0) log_info("seed ", seed, " (random; pass --seed ", seed, " to repeat this run)");
  report.seed = seed;

  // 1. The model's configs, before any slow work: a bad --model or --resolution fails now.
  SdxlModel configs = read_sdxl_configs(o.model, o.model_config);
  const int64_t multiple = resolution_multiple(configs);

  // 2. The output folder: an earlier run's outputs go first (nothing stale looks complete); a
  //    resumed run keeps the metrics of the steps it resumes after.
  //    A resumed run clears them only once the checkpoint is known to fit the options, so a
  //    refused resume loses nothing.
  std::vector<std::string> kept_metrics;
  if (rank0) fs::create_directories(o.output_dir);
  auto clear_outputs = [&] {
    if (!rank0) return;
    if (resume && fs::is_regular_file(o.output_dir + "/metrics.jsonl")) {
      std::ifstream in(o.output_dir + "/metrics.jsonl");
      for (std::string line; std::getline(in, line) && static_cast<int64_t>(kept_metrics.size()) < resume->step;)
        kept_metrics.push_back(line);
    }
    for (const char* f : kRunOutputs) fs::remove(o.output_dir + "/" + f);
    // Unfinished checkpoint writes (no manifest) are never used: they go too.
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(ckpt_root, ec))
      if (e.is_directory() && !fs::exists(e.path() / "manifest.json")) fs::remove_all(e.path());
  };
  if (!resume) clear_outputs();

  // 3. Preprocessing (rank 0) or an earlier shard set; a resumed run reuses its own.
  std::string shard_dir = o.shards;
  const std::string input_id = o.input_images.empty() ? std::string() : content_identity(o.input_images);
  if (shard_dir.empty() && resume && fs::is_regular_file(o.output_dir + "/shards/index.json")) {
    shard_dir = o.output_dir + "/shards";
    XLTUNE_CHECK(resume->manifest["meaning"].value("input_images", std::string()) == input_id, "--input_images ",
                 o.input_images, ": not the images the checkpoint in ", resume->dir, " was trained on (it changed?)");
    if (rank0) log_info("resuming from ", resume->dir, ": reusing the shards in ", shard_dir);
  }
  if (shard_dir.empty()) {
    XLTUNE_CHECK(o.prep.resolution % multiple == 0, "--resolution ", o.prep.resolution, ": this model needs a multiple of ",
                 multiple, " (its VAE and UNet downscale by ", multiple, " in all)");
    shard_dir = o.output_dir + "/shards";
    PreprocessOptions p = o.prep;
    p.input_images = o.input_images;
    p.output_dir = shard_dir;
    p.caption_seed = seed;
    if (rank0) {
      const LoadedPreprocessModels models = load_preprocess_models(p, device);
      PreprocessReport r = preprocess(p, models.view());
      log_info("preprocessed ", r.samples, " images into ", shard_dir, " (", r.skipped_images, " skipped)");
    }
    comm.barrier();
  }
  std::unique_ptr<ShardSet> shard_set;
  try {
    shard_set = std::make_unique<ShardSet>(shard_dir);
  } catch (const Error& e) {
    if (world == 1) throw;
    XLTUNE_FAIL("rank ", comm.rank(), " cannot read the shards: ", e.what(), " (--output_dir and --shards must be on ",
                "storage that every rank's node can read)");
  }
  const ShardSet& shards = *shard_set;
  const std::string shards_id = fingerprint_of(read_file(shard_dir + "/index.json"));
  const ShardSetInfo& info = shards.info();
  if (!o.shards.empty()) {
    XLTUNE_CHECK(!o.resolution_given || o.prep.resolution == info.resolution, "--resolution ", o.prep.resolution,
                 ": the shards in ", o.shards, " were made at ", info.resolution, " (leave --resolution out)");
    o.prep.resolution = info.resolution;
    XLTUNE_CHECK(info.token_string == o.prep.captions.token_string, "--token_string ", o.prep.captions.token_string,
                 ": the shards in ", o.shards, " were captioned for '", info.token_string, "'");
    XLTUNE_CHECK(o.prep.resolution % multiple == 0, "--shards ", o.shards, ": resolution ", info.resolution,
                 " is not a multiple of ", multiple, ", which this model needs");
  }
  const std::string expected_tokens = special_tokens_for(2);
  XLTUNE_CHECK(info.special_tokens == expected_tokens, shard_dir, ": captions use the special tokens '",
               info.special_tokens, "', xltune trains ", expected_tokens);
  const int64_t num_samples = static_cast<int64_t>(shards.size());
  report.samples = num_samples;

  // 4. The model. Frozen weights in bf16 on a GPU (fp32 on the CPU); trainable ones fp32.
  const at::ScalarType frozen = device.is_cuda() ? at::kBFloat16 : at::kFloat;
  SdxlLoadOptions load;
  load.unet = at::TensorOptions().dtype(o.is_lora ? frozen : at::kFloat).device(device);
  load.text_encoders = at::TensorOptions().dtype(frozen).device(device);
  load.vae = at::TensorOptions().dtype(at::kFloat).device(device);
  load.variant = o.variant;
  load.config_dir = o.model_config;

  // 5. Latent cache: each image encoded once (fp32 VAE), by the rank whose slice it is in; then
  //    every rank reads every slice and the VAE is let go.
  const std::string vae_id = vae_fingerprint(configs, o.model);
  auto slice_key = [&](int r) {
    LatentCacheKey k{vae_id, shards_id, o.prep.resolution, {}};
    for (int64_t i = r; i < num_samples; i += world) k.samples.push_back(static_cast<uint64_t>(i));
    return k;
  };
  auto slice_path = [&](int r) {
    char name[40];
    std::snprintf(name, sizeof name, "/latents/latents-r%05d.h5", r);
    return o.output_dir + name;
  };
  fs::create_directories(o.output_dir + "/latents");
  const LatentCacheKey my_key = slice_key(comm.rank());
  std::optional<LatentCache> mine;
  if (!my_key.samples.empty()) mine = read_latent_cache(slice_path(comm.rank()), my_key);
  const bool encode = !my_key.samples.empty() && !mine.has_value();
  load.with_vae = encode || !o.validation_prompts.empty();  // validation decodes with it
  SdxlModel model = load_sdxl(o.model, load);
  if (encode) {
    mine = encode_latents(shards, model.vae, my_key.samples, my_key, 4);
    write_latent_cache(slice_path(comm.rank()), *mine);
  } else if (mine) {
    log_info("latent cache: ", slice_path(comm.rank()), " (", my_key.samples.size(), " samples, reused)");
  }
  if (o.validation_prompts.empty()) model.vae = nullptr;
  comm.barrier();
  LatentCache latents;
  latents.key = LatentCacheKey{vae_id, shards_id, o.prep.resolution, {}};
  for (int r = 0; r < world; ++r) {
    const LatentCacheKey k = slice_key(r);
    if (k.samples.empty()) continue;
    std::optional<LatentCache> part = r == comm.rank() ? std::move(mine) : read_latent_cache(slice_path(r), k);
    XLTUNE_CHECK(part.has_value(), "rank ", comm.rank(), ": the latent cache of rank ", r, " (", slice_path(r),
                 ") is missing or stale after the barrier");
    latents.scaling_factor = part->scaling_factor;
    latents.channels = part->channels, latents.height = part->height, latents.width = part->width;
    // Interleave back into shard order: slice r holds samples r, r + W, r + 2W, ...
    latents.key.samples.insert(latents.key.samples.end(), k.samples.begin(), k.samples.end());
    latents.mean.insert(latents.mean.end(), part->mean.begin(), part->mean.end());
    latents.logvar.insert(latents.logvar.end(), part->logvar.begin(), part->logvar.end());
  }
  latents = in_shard_order(std::move(latents));

  // 6. Tokenizers (the new tokens get the ids after the vocabulary) and the training set.
  ClipTokenizer tok_1 = load_tokenizer(model.tokenizer_dir_1, "<|endoftext|>");
  ClipTokenizer tok_2 = load_tokenizer(model.tokenizer_dir_2, "!");
  const std::vector<std::string> new_tokens{"<s0>", "<s1>"};
  const auto ids_1 = tok_1.add_tokens(new_tokens), ids_2 = tok_2.add_tokens(new_tokens);
  for (int i = 0; i < 2; ++i) {
    XLTUNE_CHECK(ids_1[i] == model.te1->config().vocab_size + i && ids_2[i] == model.te2->config().vocab_size + i,
                 "--model ", o.model, ": the tokenizers have ", tok_1.size() - 2, " and ", tok_2.size() - 2,
                 " tokens but the text encoders ", model.te1->config().vocab_size, " and ",
                 model.te2->config().vocab_size);
  }
  TrainingSet set = build_training_set(shards, latents, tok_1, tok_2, device);
  latents = LatentCache();

  // 7. Steps, schedule, pivot.
  DistributedSampler sampler(static_cast<uint64_t>(num_samples), comm.size(), comm.rank(), seed);
  const int64_t steps_per_epoch = static_cast<int64_t>(sampler.steps_per_epoch(static_cast<size_t>(o.train_batch_size)));
  const int64_t total = resolve_total_steps(o, steps_per_epoch);
  TrainerConfig tc;
  tc.is_lora = o.is_lora;
  tc.lora_rank = o.lora_rank;
  tc.lora_alpha = o.lora_alpha.value_or(static_cast<double>(o.lora_rank));
  tc.unet_learning_rate = o.unet_learning_rate;
  tc.ti_lr = o.ti_lr;
  tc.lora_lr = o.lora_lr;
  tc.schedule = LrSchedule{parse_lr_schedule(o.lr_scheduler), o.lr_warmup_steps, total};
  tc.max_train_steps = total;
  tc.pivot_step = resume ? resume->manifest["meaning"]["pivot_step"].get<int64_t>() : total / 2;
  if (resume) {
    XLTUNE_CHECK(resume->step <= total, "--max_train_steps ", total, ": the checkpoint in ", resume->dir, " is at step ",
                 resume->step, " already (it may be raised to train further, not lowered)");
    nlohmann::json ours = run_meaning(o, shards_id, world, seed, tc.pivot_step, tc.lora_alpha);
    ours["input_images"] = input_id;
    nlohmann::json theirs = resume->manifest["meaning"];
    if (o.shards.empty() == theirs.value("input_images", std::string()).empty())
      XLTUNE_FAIL("--input_images/--shards: the checkpoint in ", resume->dir, " was trained from ",
                  theirs.value("input_images", std::string()).empty() ? "--shards" : "--input_images");
    check_meaning(theirs, ours, resume->dir);
    clear_outputs();
  }
  tc.seed = seed;
  tc.snr_gamma = o.snr_gamma;
  tc.noise_offset = o.noise_offset;
  tc.max_grad_norm = o.max_grad_norm;
  tc.gradient_checkpointing = o.gradient_checkpointing;
  tc.optimizer_state_dtype = o.optimizer_state_dtype == "bf16" ? at::kBFloat16 : at::kFloat;
  tc.autocast_bf16 = !o.is_lora && device.is_cuda();
  if (tc.schedule.kind == LrScheduleKind::kConstant && o.lr_warmup_steps > 0 && rank0)
    log_info("--lr_scheduler constant has no warmup (as diffusers' get_scheduler); --lr_warmup_steps ",
             o.lr_warmup_steps, " is used by constant_with_warmup, linear and cosine");
  // Gradients: NCCL between GPUs, MPI between CPU ranks (Note [Gradient buckets]).
  std::unique_ptr<Communicator> device_comm;
  std::shared_ptr<GradientReducer> reducer;
  if (world > 1) {
    Communicator* grads = &comm;
    if (device.is_cuda()) {
#ifdef XLTUNE_HAVE_NCCL
      device_comm = std::make_unique<NcclCommunicator>(comm, device);
      grads = device_comm.get();
#else
      XLTUNE_FAIL("training on ", world, " GPUs needs NCCL, and this xltune was built without it (configure with ",
                  "-DXLTUNE_WITH_NCCL=on against a CUDA libtorch)");
#endif
    }
    reducer = std::make_shared<BucketedReducer>(*grads);
    // Full fine-tuning: the UNet's optimizer state sharded over the ranks (ZeRO-1).
    if (!o.is_lora && o.zero != "off") tc.zero_comm = grads;
  } else {
    reducer = std::make_shared<AfterBackwardReducer>(comm);
  }
  Trainer trainer(model, tc, configs.vae_config.scaling_factor, reducer);
  report.trainable_parameters = trainer.trainable_parameter_count();
  Validation validation(o, model, tok_1, tok_2, seed, device);
  const at::ScalarType save_dtype = dtype_of(o.save_dtype);

  // 8. run_config.json: every option as resolved, and what the run derived from them.
  if (rank0) {
    nlohmann::ordered_json rc;
    rc["options"] = nlohmann::ordered_json::parse(options_json);
    rc["options"]["seed"] = seed;
    rc["resolved"] = {{"seed", seed},
                      {"seed_was_random", !o.seed.has_value()},
                      {"resolution", o.prep.resolution},
                      {"lora_alpha", tc.lora_alpha},
                      {"samples", num_samples},
                      {"world_size", comm.size()},
                      {"global_batch_size", o.train_batch_size * comm.size()},
                      {"steps_per_epoch", steps_per_epoch},
                      {"max_train_steps", total},
                      {"steps_from", o.max_train_steps_given || !o.num_train_epochs_given ? "max_train_steps"
                                                                                            : "num_train_epochs"},
                      {"epochs", static_cast<double>(total) / steps_per_epoch},
                      {"pivot_step", tc.pivot_step},
                      {"lr_scheduler", lr_schedule_name(tc.schedule.kind)},
                      {"lr_warmup_steps", tc.schedule.warmup_steps},
                      {"prediction_type", model.scheduler.prediction_type == PredictionType::kEpsilon ? "epsilon"
                                                                                                      : "v_prediction"},
                      {"latent_scaling_factor", configs.vae_config.scaling_factor},
                      {"device", device.str()},
                      {"frozen_dtype", frozen == at::kBFloat16 ? "bf16" : "fp32"},
                      {"trainable_parameters", report.trainable_parameters},
                      {"shards", shard_dir}};
    nlohmann::ordered_json groups = nlohmann::ordered_json::array();
    for (const auto& g : trainer.groups())
      groups.push_back({{"name", g.name}, {"lr", g.hyper.lr}, {"betas", {g.hyper.beta1, g.hyper.beta2}},
                        {"eps", g.hyper.eps}, {"weight_decay", g.hyper.weight_decay}, {"tensors", g.tensors},
                        {"parameters", g.parameters},
                        {"trained_steps", g.name == "text_embeddings" ? str("1..", tc.pivot_step) : str("1..", total)}});
    rc["optimizer"] = {{"name", "AdamW"}, {"state_dtype", o.optimizer_state_dtype}, {"max_grad_norm", o.max_grad_norm},
                       {"zero_1", trainer.zero() != nullptr}, {"groups", groups}};
    write_file_atomic(o.output_dir + "/run_config.json", rc.dump(2) + "\n");
    log_info("training ", num_samples, " images for ", total, " steps (", steps_per_epoch, " per epoch, batch ",
             o.train_batch_size, world > 1 ? str(" per rank x ", world, " ranks") : std::string(), "), ", o.is_lora ? str("LoRA rank ", tc.lora_rank) : std::string("full fine-tuning"),
             ", ", report.trainable_parameters, " trainable parameters, pivot after step ", tc.pivot_step, ", on ",
             device.str());
  }
  if (!o.dump_steps.empty() && rank0 && !resume)
    write_initial_dump(o.dump_steps, weights_of(trainer, o, model, 0, total));

  // 9. The steps, from the checkpoint's when resuming: the trainer's tensors and optimizer state
  //    from it, the sampler replayed to it (its order is a function of the seed and the step).
  int64_t first_step = 1;
  if (resume) {
    const auto loading = Clock::now();
    std::map<std::string, at::Tensor> tensors;
    for (auto& [name, t] : load_safetensors(resume->dir + "/trainer.safetensors", /*copy=*/false)) tensors[name] = t;  // restore() copies
    // ZeRO-1 shards of the checkpoint's ranks, however many there were: full per-tensor moments,
    // which this run then holds sharded over its own ranks, or whole (Note [Sharded optimizer state]).
    std::vector<std::pair<std::map<std::string, at::Tensor>, std::string>> zero_shards;
    std::vector<std::string> zero_shard_files;
    for (const auto& e : fs::directory_iterator(resume->dir))
      if (e.path().filename().string().rfind("optimizer-r", 0) == 0) zero_shard_files.push_back(e.path().string());
    std::sort(zero_shard_files.begin(), zero_shard_files.end());
    for (const auto& f : zero_shard_files) {
      SafetensorsFile file(f);
      std::map<std::string, at::Tensor> t;
      for (auto& [name, v] : load_safetensors(f, /*copy=*/false)) t[name] = v;
      zero_shards.emplace_back(std::move(t), file.metadata().at("zero_layout"));
    }
    if (!zero_shards.empty()) {
      int64_t zero_steps = 0;
      for (auto& [name, v] : ZeroOptimizer::full_moments_from_shards(zero_shards, &zero_steps)) {
        tensors[name] = v;
        const std::string base = name.substr(0, name.rfind('.'));
        tensors[base + ".adamw_step"] = at::full({}, zero_steps, at::kLong);
      }
    }
    trainer.restore(tensors, resume->step);
    for (int64_t k = 0; k < resume->step; ++k) sampler.next_batch(static_cast<size_t>(o.train_batch_size));
    first_step = resume->step + 1;
    if (rank0) {
      char took[96];
      std::snprintf(took, sizeof took, " (checked in %.2f s, read in %.2f s)", checked_seconds,
                    std::chrono::duration<double>(Clock::now() - loading).count());
      log_info("resumed from ", resume->dir, ": step ", resume->step, " of ", total, " done", took);
    }
  }
  nlohmann::json meaning = run_meaning(o, shards_id, world, seed, tc.pivot_step, tc.lora_alpha);
  meaning["input_images"] = input_id;
  auto write_checkpoint = [&](int64_t step) {
    const auto started = Clock::now();
    const std::string dir = ckpt_root + "/" + checkpoint_name(step);
    fs::create_directories(dir);
    long long fail_after = 0;
    const bool inject = fault_for_step("XLTUNE_FAULT_CHECKPOINT", step, &fail_after);
    if (inject) fault::fail_writes_after(fail_after);
    try {
      if (trainer.zero() != nullptr) {  // every rank: its shard of the optimizer state
        char name[40];
        std::snprintf(name, sizeof name, "/optimizer-r%05d.safetensors", comm.rank());
        save_safetensors(dir + name, trainer.zero()->shard_state(), {{"zero_layout", trainer.zero()->layout_json()}});
      }
      if (rank0) {
        const nlohmann::json about = {{"step", step}, {"max_train_steps", total}, {"kind", o.is_lora ? "lora" : "full"}};
        save_safetensors(dir + "/trainer.safetensors", trainer.checkpoint_tensors(),
                         {{"xltune_checkpoint", about.dump()}});
        // The tar's files, so that any step's weights can be taken; a full fine-tuning checkpoint
        // leaves out trainer_state.safetensors (its fp32 weights are trainer.safetensors' too).
        const TrainedWeights w = weights_of(trainer, o, model, step, total);
        if (o.is_lora) write_run_files(trainer, w, dir, save_dtype);
        else write_export_files(w, dir, save_dtype);
      }
    } catch (const Error& e) {
      fault::clear();
      XLTUNE_FAIL("checkpoint at step ", step, " not written (", e.what(), "); the previous checkpoint is intact");
    }
    if (inject) fault::clear();
    if (rank0 && fault_for_step("XLTUNE_FAULT_KILL_IN_CHECKPOINT", step, nullptr)) ::raise(SIGKILL);
    const SamplerPosition pos = sampler.position();
    nlohmann::json meta = {{"meaning", meaning},
                           {"max_train_steps", total},
                           {"sampler", {{"epoch", pos.epoch}, {"global_offset", pos.offset * world}}}};
    commit_checkpoint(comm, ckpt_root, step, meta, o.checkpoints_total_limit, started);
  };

  std::ofstream metrics;
  std::vector<double> losses;
  if (rank0) {
    metrics.open(o.output_dir + "/metrics.jsonl", std::ios::out | std::ios::trunc);
    XLTUNE_CHECK(metrics.good(), "cannot write ", o.output_dir, "/metrics.jsonl");
    for (const auto& line : kept_metrics) {
      metrics << line << "\n";
      losses.push_back(nlohmann::json::parse(line).value("loss", 0.0));
    }
    metrics.flush();
  }
  TrainProgress progress(total, o.log_every, rank0 && o.verbose);
  reset_peak_memory(device);
  for (int64_t step = first_step; step <= total; ++step) {
    const auto step_start = Clock::now();
    const SamplerPosition before = sampler.position();
    const std::vector<uint64_t> indices = sampler.next_batch(static_cast<size_t>(o.train_batch_size));
    std::vector<int64_t> positions;
    for (size_t j = 0; j < indices.size(); ++j)
      positions.push_back(static_cast<int64_t>(j) * comm.size() + comm.rank());
    StepBatch batch = set.batch(indices, positions);
    maybe_inject_fault(comm.rank(), step);
    StepResult r = trainer.step(step, batch);
    // The global batch's loss (every rank has the same number of samples in a step), and which
    // samples it held, in global position order: one small all-reduce.
    std::vector<double> shared(2 + static_cast<size_t>(o.train_batch_size) * world, 0.0);
    shared[0] = r.loss;
    shared.back() = stop_requested() ? 1.0 : 0.0;
    for (size_t j = 0; j < indices.size(); ++j) shared[1 + static_cast<size_t>(positions[j])] = indices[j] + 1.0;
    shared = all_reduce_sum_values(comm, shared, device);
    const double loss = shared[0] / world;
    XLTUNE_CHECK(std::isfinite(loss), "step ", step, ": the loss is ", loss,
                 " (diverged: lower the learning rates, or check the model files)");
    losses.push_back(loss);
    if (!o.dump_steps.empty()) write_step_dump(o.dump_steps, step, batch, r, world > 1 ? comm.rank() : -1);
    if (o.replica_check_steps > 0 && step % o.replica_check_steps == 0) check_replicas(comm, trainer, step);
    const double seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    if (rank0) {
      nlohmann::ordered_json line = {{"step", step}, {"epoch", before.epoch}, {"loss", loss}};
      nlohmann::ordered_json lr = nlohmann::ordered_json::object();
      for (const auto& [name, value] : r.learning_rates) lr[name] = value;
      line["lr"] = lr;
      line["grad_norm"] = r.grad_norm;
      line["samples_per_s"] = seconds > 0 ? static_cast<double>(indices.size() * comm.size()) / seconds : 0.0;
      line["peak_memory_bytes"] = peak_memory_bytes(device);
      line["text_encoders_ran"] = r.text_encoders_ran;
      line["optimizer_state_bytes"] = trainer.optimizer_state_bytes();  // this rank's
      std::vector<int64_t> samples;
      for (size_t k = 1; k + 1 < shared.size(); ++k)
        if (shared[k] > 0) samples.push_back(static_cast<int64_t>(shared[k]) - 1);
      line["samples"] = samples;
      metrics << line.dump() << "\n";
      metrics.flush();
      progress.update(step, loss, r.learning_rates.front().second);
    }
    if (validation.due(step, total)) {
      progress.finish();
      validation.render(step, comm);
    }
    const bool stopping = shared.back() > 0;  // a rank was asked to stop (SIGTERM, SIGUSR1)
    if (step % o.checkpointing_steps == 0 || step == total || stopping) {
      progress.finish();
      write_checkpoint(step);
    }
    if (stopping && step < total) {
      if (rank0) log_warn("stopping after step ", step, " of ", total, " (signal ", stop_signal(), "): checkpoint written; ",
                          "exit ", kExitRequeue, " asks the batch script to requeue the job");
      comm.barrier();
      report.steps = step;
      report.stopped = true;
      return report;
    }
  }
  progress.finish();
  comm.barrier();
  report.steps = total;
  report.final_loss = losses.empty() ? 0.0 : losses.back();

  // 10. Outputs: the trainer state and export files, then the tar (last).
  if (rank0) {
    metrics.close();
    TrainedWeights w = weights_of(trainer, o, model, total, total);
    report.files = write_run_files(trainer, w, o.output_dir, save_dtype);
    write_loss_plot(o.output_dir + "/loss.png", losses,
                    str("xltune ", o.is_lora ? "LoRA" : "full fine-tuning", ": ", num_samples, " images, ", total,
                        " steps, batch ", o.train_batch_size));
    report.tar_path = o.output_dir + "/trained_model.tar";
    write_trained_model_tar(o.output_dir, report.files, report.tar_path);
  }
  comm.barrier();  // every rank ends after the outputs exist
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return report;
}

}  // namespace xltune
