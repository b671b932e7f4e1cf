// `xltune train`, the whole job (design.md "The shape"):
//
//   options checked -> model configs checked against --resolution -> preprocessing into
//   OUTPUT_DIR/shards (or --shards) -> model loaded -> latent cache (OUTPUT_DIR/latents) ->
//   training set in memory -> run_config.json -> steps (progress, metrics.jsonl, --dump_steps,
//   checkpoints every --checkpointing_steps) -> trainer_state.safetensors, the exported files
//   and trained_model.tar (last: the run is complete when it exists) -> loss.png
//
// Outputs of an earlier run in OUTPUT_DIR are removed first, so that a run that fails leaves
// nothing that looks complete.
//
// Note [The job's shape] (many ranks)
//   1. rank 0 ingests, preprocesses and writes the HDF5 shards while the other ranks wait in a
//      barrier that sleeps, the one collective without --collective_timeout (Note [No hang]);
//   2. every rank opens the shards (a rank that cannot see them says so: OUTPUT_DIR must be on
//      storage every node reads), VAE-encodes its slice (samples i with i mod W = r) into
//      latents/latents-rNNNNN.h5; barrier; every rank reads every slice;
//   3. train: --train_batch_size is per rank, a step is one global batch of W x b samples
//      (the sampler's strided rank slices), rank r's j-th sample sits at global position j W + r,
//      so draws, and therefore steps, mean the same whatever W is (Note [Keyed draws]);
//      gradients are averaged by the bucketed reducer; the reported loss is the mean over ranks;
//   4. rank 0 writes metrics, checkpoints and the outputs.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "job/run_hooks.h"
#include "job/train_options.h"

namespace xltune {

struct TrainJobReport {
  std::string output_dir;
  std::string tar_path;
  std::vector<std::string> files;  // members of the tar
  int64_t steps = 0;
  int64_t samples = 0;
  int64_t trainable_parameters = 0;
  uint64_t seed = 0;
  double final_loss = 0;
  int64_t skipped_steps = 0;  // over the whole run, resumes included (Note [Skipped steps])
  // Note [The step as a CUDA graph]: this process's steps from the static inputs, and its captures
  // and replays (with --cuda_graph static, those the eager static step stood in for).
  bool step_graph = false, step_graph_static = false;
  int64_t graphed_steps = 0, graph_captures = 0, graph_replays = 0;
  // Note [Reading a step one step late]: steps issued before the step before them was read.
  int64_t steps_read_late = 0;
  double seconds = 0;
  // Stopped by a stop signal: after a checkpoint, or before the first step with nothing written;
  // either way exit kExitRequeue (75).
  bool stopped = false;
};

class Communicator;

// `options`: checked by validate_train_options (the command line does, once). option_values:
// every option by name as the command line resolved it (for run_config.json). `comm`:
// this process's rank in the job (a SingleProcessCommunicator without a launcher). Every rank
// calls it; rank 0 preprocesses and writes the outputs (Note [The job's shape]). `hooks`: this
// rank's stop requests and injected faults (job/run_hooks.h); production's reads the signals the
// command installed (install_stop_handlers, job/stop_signal.h) and the XLTUNE_FAULT_* variables.
TrainJobReport run_train_job(const TrainOptions& options, const nlohmann::ordered_json& option_values,
                             Communicator& comm, RunHooks& hooks = process_run_hooks());

}  // namespace xltune
