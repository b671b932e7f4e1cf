#include "job/train_job.h"

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/log.h"
#include "data/sampler.h"
#include "dist/collective_watchdog.h"
#include "dist/communicator.h"
#include "job/checkpoint_writer.h"
#include "job/latent_gather.h"
#include "job/resume_plan.h"
#include "job/run_config.h"
#include "job/run_identity.h"
#include "job/run_outputs.h"
#include "job/step_dump.h"
#include "job/stop_signal.h"
#include "job/tensorboard_log.h"
#include "job/trained_model_tar.h"
#include "job/trainer_setup.h"
#include "job/training_loop.h"
#include "job/training_set.h"
#include "job/training_shards.h"
#include "job/validation.h"
#include "job/validation_loss.h"

namespace fs = std::filesystem;

namespace xltune {
namespace {

// This rank's latent slice, encoded with the model's VAE when the cache has none that is fresh;
// the VAE stays only for validation images.
std::optional<LatentCache> my_latents(const LatentSlices& slices, int rank, const ShardSet& shards, SdxlModel& model,
                                      std::optional<LatentCache> mine, bool keep_vae) {
  if (!mine && !slices.empty(rank)) mine = slices.encode(rank, shards, model.vae);
  else if (mine) log_info("latent cache: ", slices.path(rank), " (", mine->key.samples.size(), " samples, reused)");
  if (!keep_vae) model.vae = nullptr;
  return mine;
}

// --report_to tensorboard: rank 0's event file in OUTPUT_DIR/logs/, from `first_step` (a resumed
// run's events replace those an earlier file holds from there); null otherwise.
std::unique_ptr<TensorBoardLog> open_tensorboard(const TrainOptions& o, bool rank0, int64_t first_step) {
  if (!rank0 || o.report_to != ReportTo::kTensorBoard) return nullptr;
  auto log = std::make_unique<TensorBoardLog>(o.output_dir + "/" + kTensorBoardDir);
  log->start_at(first_step);
  return log;
}

TrainJobReport report_of(const TrainOptions& o, const ResumePlan& resume, int64_t samples, const Trainer& trainer,
                         const TrainingLoopEnd& end, const MetricsLog* metrics) {
  TrainJobReport report;
  report.output_dir = o.output_dir;
  report.seed = resume.seed;
  report.samples = samples;
  report.trainable_parameters = trainer.trainable_parameter_count();
  report.steps = end.last_step;
  report.final_loss = end.last_loss;
  report.skipped_steps = trainer.bad_step_guard().skipped_total();
  report.step_graph = trainer.config().step_graph != TrainerConfig::StepGraph::kOff;
  report.step_graph_static = trainer.config().step_graph == TrainerConfig::StepGraph::kStatic;
  report.graphed_steps = trainer.graphed_steps();
  report.graph_captures = trainer.graph_captures();
  report.graph_replays = trainer.graph_replays();
  report.steps_read_late = trainer.steps_issued_before_settling();
  // A resumed run that had no step left: rank 0's last logged loss.
  if (end.last_step == resume.step() && metrics != nullptr && !metrics->losses().empty())
    report.final_loss = metrics->losses().back();
  return report;
}

// A stop signal before the loop (start-up included: `xltune train` installs its handlers first):
// the ranks agree on it at each phase boundary in a small all-reduce, as the loop does at each
// step, since a signal reaches each rank at its own moment. Agreed, it unwinds set-up to
// run_train_job, which reports the stop.
struct StoppedBeforeTraining {
  const char* phase;
};
void stop_if_agreed(Communicator& comm, RunHooks& hooks, const at::Device& device, const char* phase) {
  const double mine = hooks.stop_signal() != 0 ? 1.0 : 0.0;
  if (all_reduce_sum_values(comm, {mine}, device).front() > 0) throw StoppedBeforeTraining{phase};
}

// With aspect buckets every global batch comes from one bucket (Note [Aspect buckets]).
DistributedSampler training_sampler(const TrainOptions& o, const ShardSetInfo& info, const TrainingSet& set,
                                    Communicator& comm, uint64_t seed) {
  if (!info.aspect_buckets)
    return DistributedSampler(static_cast<uint64_t>(set.size()), comm.size(), comm.rank(), seed);
  const auto global_batch = static_cast<uint64_t>(o.samples_per_rank_step() * comm.size());
  return DistributedSampler(set.size_keys(), comm.size(), comm.rank(), seed, global_batch);
}

nlohmann::json buckets_meaning(const ShardSetInfo& info) {
  if (!info.aspect_buckets) return false;
  return {{"bucket_step", info.bucket_step}, {"max_aspect_ratio", info.max_aspect_ratio}};
}

// Nothing trained, so nothing to checkpoint: the last complete checkpoint, if any, stays the one
// a resume takes. A stop during rank 0's preprocessing is seen when it ends (preprocessing has no
// stop point of its own).
TrainJobReport stopped_before_training(const TrainOptions& o, Communicator& comm, const char* phase) {
  if (comm.rank() == 0)
    log_warn("stopped by a stop signal ", phase, ", before the first step: nothing to checkpoint; exit ", kExitRequeue,
             " asks the batch script to requeue the job");
  TrainJobReport report;
  report.output_dir = o.output_dir;
  report.stopped = true;
  return report;
}

// Note [Deterministic mode]: rank 0 says when a resume cannot keep the promise of bit-identical steps.
void warn_if_resume_is_not_bit_identical(const ResumePlan& resume, const TrainOptions& o, Communicator& comm) {
  if (comm.rank() != 0) return;
  const std::string warning = resume_determinism_warning(resume, o.deterministic, comm.size());
  if (!warning.empty()) log_warn(warning);
}

// The phases in order; each is a function of its own (Note [The job's shape]).
TrainJobReport run_phases(const TrainOptions& options, const nlohmann::ordered_json& option_values, Communicator& comm,
                          RunHooks& hooks) {
  const auto start = std::chrono::steady_clock::now();
  TrainOptions o = options;
  o.prep = preprocess_options_of(o);
  const bool rank0 = comm.rank() == 0;
  const Placement placement = training_placement(o, comm.local_rank());
  const at::Device device = placement.device;

  // 1. Resuming? Decided before any slow work; a bad --model or --resolution fails now too.
  const ResumePlan resume = plan_resume(o, comm);
  stop_if_agreed(comm, hooks, device, "at start-up");
  const SdxlModel configs = read_sdxl_configs(o.model, o.model_config);
  // 2. An earlier run's outputs go (a resumed run's only once its checkpoint fits, below).
  if (rank0) fs::create_directories(o.output_dir);
  if (rank0 && !resume.resuming()) clear_run_outputs(o.output_dir, 0);
  // 3. The shards: preprocessed by rank 0, or reused.
  const TrainingShards shards = prepare_training_shards(o, resume, resolution_multiple(configs), device, comm);
  stop_if_agreed(comm, hooks, device, "while the shards were prepared");
  o.prep.resolution = shards.resolution;
  // 4. The model, and the latents of every image (each encoded once, by one rank).
  LatentSlices slices(o.output_dir, LatentCacheKey{vae_fingerprint(configs, o.model), shards.id, shards.resolution, {}},
                      shards.size(), comm.size());
  std::optional<LatentCache> mine = slices.read(comm.rank());
  const bool encode = !mine && !slices.empty(comm.rank());
  const bool validating = !o.validation_prompts.empty();
  SdxlModel model = load_sdxl(o.model, sdxl_load_options(o, placement, encode || validating));
  mine = my_latents(slices, comm.rank(), *shards.set, model, std::move(mine), validating);
  // Also the barrier after the latents: every rank has written its slice once all have agreed.
  stop_if_agreed(comm, hooks, device, "while the model and the latents loaded");
  // 5. The training set: latents, masks, token ids and size conditioning on the device.
  const TrainingTokenizers tokenizers = load_training_tokenizers(model, o.model);
  TrainingSet set = build_training_set(
      *shards.set, gather_latents(slices, comm.rank(), std::move(mine), configs.vae_config.scaling_factor),
      tokenizers.first, tokenizers.second, device);
  // The validation loss's images, taken out of `set` when held out (Note [Validation loss]).
  const ValidationLoss validation_loss(o, set, resume.seed, device, rank0);
  // 6. The trainer, configured from the options; a resumed run must mean what its checkpoint does.
  DistributedSampler sampler = training_sampler(o, shards.set->info(), set, comm, resume.seed);
  const int64_t steps_per_epoch = static_cast<int64_t>(sampler.steps_per_epoch(static_cast<size_t>(o.samples_per_rank_step())));
  const int64_t total = resolve_total_steps(o, steps_per_epoch);
  const int64_t pivot = resume.resuming() ? resume.meaning().at("pivot_step").get<int64_t>() : total / 2;
  TrainerConfig tc = trainer_config_from(o, total, pivot, resume.seed, placement);
  const nlohmann::json meaning =
      run_meaning(tc, RunData{o.model, shards.resolution, o.prep.captions.token_string,
                              o.samples_per_rank_step() * comm.size(), shards.id, shards.input_id,
                              validation_loss.held_out(), buckets_meaning(shards.set->info())});
  std::vector<std::string> kept_metrics;
  if (resume.resuming()) check_resume_matches(resume, meaning, !o.shards.empty(), total);
  warn_if_resume_is_not_bit_identical(resume, o, comm);
  if (resume.resuming() && rank0) kept_metrics = clear_run_outputs(o.output_dir, resume.step());
  if (tc.schedule.kind == LrScheduleKind::kConstant && o.lr_warmup_steps > 0 && rank0)
    log_info("--lr_scheduler constant has no warmup (as diffusers' get_scheduler); --lr_warmup_steps ",
             o.lr_warmup_steps, " is used by constant_with_warmup, linear and cosine");
  GradientPath gradients = make_gradient_path(comm, device, o);
  if (gradients.device_comm) gradients.device_comm->set_collective_timeout(o.collective_timeout);
  Trainer trainer(model, tc, configs.vae_config.scaling_factor, gradients.reducer, gradients.optimizer_shards);
  Validation validation(o, model, tokenizers.first, tokenizers.second, resume.seed, device);
  // 7. run_config.json: the options as resolved and what the run derived from them.
  const ResolvedRun run{resume.seed, resume.seed_was_random, shards.resolution, shards.size(), comm.size(),
                        steps_per_epoch, total, shards.dir, placement, gradients.reduce_dtype,
                        trainer.optimizer_state_sharded() ? gradients.gather_dtype : at::ScalarType::Undefined};
  if (rank0) {
    write_file_atomic(o.output_dir + "/run_config.json",
                      run_config_json(o, option_values, run, trainer, model, validation_loss.describe(trainer)));
    log_info(training_summary(o, run, trainer));
  }
  if (!o.dump_steps.empty() && rank0 && !resume.resuming())
    write_initial_dump(o.dump_steps, weights_of(trainer, o, model, 0, total));
  stop_if_agreed(comm, hooks, device, "while the trainer was set up");
  // 8. The steps, from the checkpoint's when resuming.
  const int64_t first_step = resume_training(resume, trainer, sampler, o.samples_per_rank_step(), total, rank0);
  const std::unique_ptr<TensorBoardLog> tensorboard = open_tensorboard(o, rank0, first_step);
  std::optional<MetricsLog> metrics;
  if (rank0) metrics.emplace(o.output_dir + "/metrics.jsonl", kept_metrics, tensorboard.get());
  validation.report_to(tensorboard.get());
  CheckpointWriter checkpoints(o, comm, trainer, model, sampler, meaning, total, hooks);
  TrainingLoop loop(o, comm, trainer, set, sampler, validation, validation_loss, checkpoints,
                    metrics ? &*metrics : nullptr, device, hooks);
  const TrainingLoopEnd end = loop.run(first_step, total);

  TrainJobReport report = report_of(o, resume, shards.size(), trainer, end, metrics ? &*metrics : nullptr);
  if (end.stopped) {
    if (rank0) log_warn("stopping after step ", end.last_step, " of ", total, " (signal ", hooks.stop_signal(), "): ",
                        "checkpoint written; exit ", kExitRequeue, " asks the batch script to requeue the job");
    comm.barrier();
    report.stopped = true;
    return report;
  }
  comm.barrier();
  // 9. The outputs, the tar last.
  if (rank0) {
    metrics->close();
    report.files = write_final_outputs(trainer, o, model, *metrics, shards.size(), total);
    report.tar_path = o.output_dir + "/" + kTrainedModelTar;
  }
  comm.barrier();  // every rank ends after the outputs exist
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace

TrainJobReport run_train_job(const TrainOptions& options, const nlohmann::ordered_json& option_values,
                             Communicator& comm, RunHooks& hooks) {
  set_current_step(0);  // Note [No hang]: the collectives' timeout, and the step its message names
  comm.set_collective_timeout(options.collective_timeout);
  try {
    return run_phases(options, option_values, comm, hooks);
  } catch (const StoppedBeforeTraining& stop) {
    return stopped_before_training(options, comm, stop.phase);
  }
}

}  // namespace xltune
