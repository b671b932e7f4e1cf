#include "job/train_job.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/data_files.h"
#include "core/log.h"
#include "core/memory_stats.h"
#include "core/state_dict.h"
#include "data/captions.h"
#include "data/hdf5_shards.h"
#include "data/latent_cache_file.h"
#include "data/sampler.h"
#include "dist/communicator.h"
#include "dist/gradient_reducer.h"
#include "job/loss_plot.h"
#include "job/progress.h"
#include "job/step_dump.h"
#include "job/training_set.h"
#include "train/export.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace xltune {

namespace {

using Clock = std::chrono::steady_clock;

// Files of a finished run; an earlier run's are removed before a new one starts.
const char* const kRunOutputs[] = {"trained_model.tar", "trainer_state.safetensors", "lora.safetensors",
                                   "lora_kohya.safetensors", "unet.safetensors", "embeddings.pti",
                                   "embeddings_sdxl.safetensors", "special_params.json", "loss.png",
                                   "metrics.jsonl", "run_config.json"};

at::Device resolve_device(const std::string& name) {
  if (name == "auto") return torch::cuda::is_available() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  if (name == "cpu") return at::Device(at::kCPU);
  at::Device d(name);
  XLTUNE_CHECK(torch::cuda::is_available(), "--device ", name, ": this xltune's libtorch has no usable CUDA device");
  return d;
}

std::string file_fingerprint(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  return fingerprint_of(path + ":" + std::to_string(ec ? 0 : size));
}

// What identifies the VAE that made a latent cache: its config and weights file.
std::string vae_fingerprint(const SdxlModel& configs, const std::string& model) {
  if (configs.single_file) return file_fingerprint(model);
  return fingerprint_of(read_file(model + "/vae/config.json") + file_fingerprint(find_safetensors_weights(model + "/vae")));
}

ClipTokenizer load_tokenizer(const std::string& dir, const char* pad) {
  return dir.empty() ? ClipTokenizer::from_bpe_file(clip_vocabulary_file(), pad) : ClipTokenizer::from_folder(dir);
}

TrainedWeights weights_of(const Trainer& trainer, const TrainOptions& o, const SdxlModel& model, int64_t step,
                          int64_t total) {
  TrainedWeights w;
  const TrainerConfig& c = trainer.config();
  w.kind = c.is_lora ? "lora" : "full";
  w.lora_rank = c.lora_rank;
  w.lora_alpha = c.lora_alpha;
  for (const auto& site : trainer.lora().sites())
    w.lora.push_back(LoraTensors{site.module, site.projection, site.adapter->down, site.adapter->up});
  w.rows_1 = trainer.pivotal().rows(0);
  w.rows_2 = trainer.pivotal().rows(1);
  w.token_string = o.prep.captions.token_string;
  w.special_tokens = o.prep.captions.special_tokens;
  if (!c.is_lora)
    for (const auto& item : model.unet->named_parameters()) w.unet.emplace_back(item.key(), item.value());
  w.step = step;
  w.max_train_steps = total;
  w.model = o.model;
  w.training_metadata = {{"ss_training_comment", "trained with xltune"},
                         {"ss_resolution", str("(", o.prep.resolution, ", ", o.prep.resolution, ")")},
                         {"ss_steps", std::to_string(step)},
                         {"ss_max_train_steps", std::to_string(total)},
                         {"ss_seed", std::to_string(c.seed)},
                         {"ss_learning_rate", str(o.lora_lr)},
                         {"ss_text_encoder_lr", str(o.ti_lr)},
                         {"ss_lr_scheduler", o.lr_scheduler},
                         {"ss_lr_warmup_steps", std::to_string(o.lr_warmup_steps)},
                         {"ss_batch_size_per_device", std::to_string(o.train_batch_size)},
                         {"ss_sd_model_name", fs::path(o.model).filename().string()}};
  return w;
}

// The trainer state and every export file into `dir`; returns the files for the tar.
std::vector<std::string> write_run_files(const Trainer& trainer, const TrainedWeights& w, const std::string& dir,
                                         at::ScalarType unet_dtype) {
  fs::create_directories(dir);
  write_trainer_state(dir + "/trainer_state.safetensors", trainer.trainable_state(), w);
  return write_export_files(w, dir, unet_dtype);
}

// Note [Weights checkpoints]: every --checkpointing_steps, OUTPUT_DIR/checkpoints/step-NNNNNN/
// gets the trainer state and the export files, written into a temporary folder and renamed,
// so a folder under that name is always whole. (Optimizer state and exact resume: issue 10.)
void write_weights_checkpoint(const Trainer& trainer, const TrainedWeights& w, const std::string& output_dir,
                              int64_t step, at::ScalarType unet_dtype) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%06lld", static_cast<long long>(step));
  const std::string root = output_dir + "/checkpoints", final_dir = root + "/" + name,
                    temp = root + "/." + name + ".partial";
  fs::remove_all(temp);
  write_run_files(trainer, w, temp, unet_dtype);
  fs::remove_all(final_dir);
  fs::rename(temp, final_dir);
  fsync_directory(root);
  log_info("checkpoint: ", final_dir);
}

at::ScalarType dtype_of(const std::string& name) {
  if (name == "fp32") return at::kFloat;
  if (name == "fp16") return at::kHalf;
  return at::kBFloat16;
}

}  // namespace

TrainJobReport run_train_job(const TrainOptions& options, const std::string& options_json) {
  const auto start = Clock::now();
  TrainOptions o = options;
  validate_train_options(o);
  TrainJobReport report;
  report.output_dir = o.output_dir;
  SingleProcessCommunicator comm;
  const bool rank0 = comm.rank() == 0;
  if (o.threads > 0) at::set_num_threads(o.threads);
  const at::Device device = resolve_device(o.device);
  if (device.is_cuda()) {
    // TF32 for the fp32 matmuls and convolutions that remain (the trainable parts).
    at::globalContext().setAllowTF32CuBLAS(true);
    at::globalContext().setAllowTF32CuDNN(true);
  }
  const uint64_t seed = o.seed ? *o.seed : std::random_device{}();
  if (!o.seed) log_info("seed ", seed, " (random; pass --seed ", seed, " to repeat this run)");
  report.seed = seed;

  // 1. The model's configs, before any slow work: a bad --model or --resolution fails now.
  SdxlModel configs = read_sdxl_configs(o.model, o.model_config);
  const int64_t multiple = resolution_multiple(configs);

  // 2. The output folder: an earlier run's outputs go first (nothing stale looks complete).
  fs::create_directories(o.output_dir);
  for (const char* f : kRunOutputs) fs::remove(o.output_dir + "/" + f);

  // 3. Preprocessing (rank 0) or an earlier shard set.
  std::string shard_dir = o.shards;
  if (shard_dir.empty()) {
    XLTUNE_CHECK(o.prep.resolution % multiple == 0, "--resolution ", o.prep.resolution, ": this model needs a multiple of ",
                 multiple, " (its VAE and UNet downscale by ", multiple, " in all)");
    shard_dir = o.output_dir + "/shards";
    PreprocessOptions p = o.prep;
    p.input_images = o.input_images;
    p.output_dir = shard_dir;
    if (rank0) {
      PreprocessReport r = preprocess(p);
      log_info("preprocessed ", r.samples, " images into ", shard_dir, " (", r.skipped_images, " skipped)");
    }
    comm.barrier();
  }
  ShardSet shards(shard_dir);
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

  // 5. Latent cache: each image encoded once (fp32 VAE), then the VAE is let go.
  std::vector<uint64_t> all(num_samples);
  for (int64_t i = 0; i < num_samples; ++i) all[i] = static_cast<uint64_t>(i);
  LatentCacheKey key{vae_fingerprint(configs, o.model), fingerprint_of(read_file(shard_dir + "/index.json")),
                     o.prep.resolution, all};
  fs::create_directories(o.output_dir + "/latents");
  const std::string cache_path = o.output_dir + "/latents/latents-r00000.h5";
  std::optional<LatentCache> latents = read_latent_cache(cache_path, key);
  load.with_vae = !latents.has_value();
  SdxlModel model = load_sdxl(o.model, load);
  if (!latents) {
    latents = encode_latents(shards, model.vae, all, key, 4);
    write_latent_cache(cache_path, *latents);
  } else {
    log_info("latent cache: ", cache_path, " (", num_samples, " samples, reused)");
  }
  model.vae = nullptr;

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
  TrainingSet set = build_training_set(shards, *latents, tok_1, tok_2, device);
  latents.reset();

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
  tc.pivot_step = total / 2;
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
  Trainer trainer(model, tc, configs.vae_config.scaling_factor, std::make_shared<AfterBackwardReducer>(comm));
  report.trainable_parameters = trainer.trainable_parameter_count();
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
                       {"groups", groups}};
    write_file_atomic(o.output_dir + "/run_config.json", rc.dump(2) + "\n");
    log_info("training ", num_samples, " images for ", total, " steps (", steps_per_epoch, " per epoch, batch ",
             o.train_batch_size, "), ", o.is_lora ? str("LoRA rank ", tc.lora_rank) : std::string("full fine-tuning"),
             ", ", report.trainable_parameters, " trainable parameters, pivot after step ", tc.pivot_step, ", on ",
             device.str());
  }
  if (!o.dump_steps.empty() && rank0) write_initial_dump(o.dump_steps, weights_of(trainer, o, model, 0, total));

  // 9. The steps.
  std::ofstream metrics;
  if (rank0) {
    metrics.open(o.output_dir + "/metrics.jsonl", std::ios::out | std::ios::trunc);
    XLTUNE_CHECK(metrics.good(), "cannot write ", o.output_dir, "/metrics.jsonl");
  }
  TrainProgress progress(total, o.log_every, rank0 && o.verbose);
  std::vector<double> losses;
  reset_peak_memory(device);
  for (int64_t step = 1; step <= total; ++step) {
    const auto step_start = Clock::now();
    const SamplerPosition before = sampler.position();
    const std::vector<uint64_t> indices = sampler.next_batch(static_cast<size_t>(o.train_batch_size));
    std::vector<int64_t> positions;
    for (size_t j = 0; j < indices.size(); ++j)
      positions.push_back(static_cast<int64_t>(j) * comm.size() + comm.rank());
    StepBatch batch = set.batch(indices, positions);
    StepResult r = trainer.step(step, batch);
    XLTUNE_CHECK(std::isfinite(r.loss), "step ", step, ": the loss is ", r.loss,
                 " (diverged: lower the learning rates, or check the model files)");
    losses.push_back(r.loss);
    if (!o.dump_steps.empty() && rank0) write_step_dump(o.dump_steps, step, batch, r);
    const double seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    if (rank0) {
      nlohmann::ordered_json line = {{"step", step}, {"epoch", before.epoch}, {"loss", r.loss}};
      nlohmann::ordered_json lr = nlohmann::ordered_json::object();
      for (const auto& [name, value] : r.learning_rates) lr[name] = value;
      line["lr"] = lr;
      line["grad_norm"] = r.grad_norm;
      line["samples_per_s"] = seconds > 0 ? static_cast<double>(indices.size() * comm.size()) / seconds : 0.0;
      line["peak_memory_bytes"] = peak_memory_bytes(device);
      line["text_encoders_ran"] = r.text_encoders_ran;
      metrics << line.dump() << "\n";
      metrics.flush();
      progress.update(step, r.loss, r.learning_rates.front().second);
    }
    if (step % o.checkpointing_steps == 0 && step < total && rank0) {
      progress.finish();
      write_weights_checkpoint(trainer, weights_of(trainer, o, model, step, total), o.output_dir, step, save_dtype);
    }
  }
  progress.finish();
  report.steps = total;
  report.final_loss = losses.back();

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
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return report;
}

}  // namespace xltune
