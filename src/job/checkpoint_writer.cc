#include "job/checkpoint_writer.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/safetensors.h"
#include "job/checkpoint.h"
#include "job/run_outputs.h"
#include "train/export.h"

namespace fs = std::filesystem;

namespace xltune {
namespace {

// The hooks' write failure for one checkpoint's files, cleared when they are written or not,
// so that no later write of the run (the final outputs) inherits it.
class InjectedWriteFailure {
 public:
  explicit InjectedWriteFailure(std::optional<int64_t> bytes) : on_(bytes.has_value()) {
    if (on_) fault::fail_writes_after(*bytes);
  }
  ~InjectedWriteFailure() {
    if (on_) fault::clear();
  }
  InjectedWriteFailure(const InjectedWriteFailure&) = delete;
  InjectedWriteFailure& operator=(const InjectedWriteFailure&) = delete;

 private:
  bool on_;
};

}  // namespace

CheckpointWriter::CheckpointWriter(const TrainOptions& o, Communicator& comm, const Trainer& trainer,
                                   const SdxlModel& model, const DistributedSampler& sampler, nlohmann::json meaning,
                                   int64_t total_steps, RunHooks& hooks)
    : o_(o), comm_(comm), trainer_(trainer), model_(model), sampler_(sampler), meaning_(std::move(meaning)),
      total_(total_steps), hooks_(hooks) {}

void CheckpointWriter::write_files(const std::string& dir, int64_t step) {
  if (auto own = trainer_.rank_optimizer_state()) {  // every rank: its shard of the optimizer state
    char name[40];
    std::snprintf(name, sizeof name, "/optimizer-r%05d.safetensors", comm_.rank());
    save_safetensors(dir + name, own->tensors, own->metadata);
  }
  if (comm_.rank() != 0) return;
  const nlohmann::json about = {{"step", step}, {"max_train_steps", total_}, {"kind", o_.is_lora ? "lora" : "full"}};
  save_safetensors(dir + "/trainer.safetensors", trainer_.checkpoint_tensors(), {{"xltune_checkpoint", about.dump()}});
  // The tar's files, so that any step's weights can be taken; a full fine-tuning checkpoint
  // leaves out trainer_state.safetensors (its fp32 weights are trainer.safetensors' too). With
  // --use_ema they are the EMA's, as the tar would be (trainer.safetensors, written above, holds
  // both): swapped in on this rank only, and back before the next step.
  const ParameterEma::Swap ema = trainer_.ema_weights_in();
  const TrainedWeights w = weights_of(trainer_, o_, model_, step, total_);
  if (o_.is_lora) write_run_files(trainer_, w, dir, o_.save_dtype);
  else write_export_files(w, dir, o_.save_dtype);
}

void CheckpointWriter::write(int64_t step) {
  const auto started = std::chrono::steady_clock::now();
  const std::string root = o_.output_dir + "/checkpoints";
  const std::string dir = root + "/" + checkpoint_name(step);
  fs::create_directories(dir);
  try {
    const InjectedWriteFailure injected(hooks_.checkpoint_write_budget(comm_.rank(), step));
    write_files(dir, step);
  } catch (const Error& e) {
    XLTUNE_FAIL("checkpoint at step ", step, " not written (", e.what(), "); the previous checkpoint is intact");
  }
  if (comm_.rank() == 0) hooks_.inside_checkpoint(step);
  const SamplerPosition pos = sampler_.position();
  nlohmann::json meta = {{"meaning", meaning_},
                         {"max_train_steps", total_},
                         {"deterministic", o_.deterministic},  // resume_determinism_warning
                         {"sampler", {{"epoch", pos.epoch}, {"global_offset", pos.offset * comm_.size()}}}};
  commit_checkpoint(comm_, root, step, meta, o_.checkpoints_total_limit, started);
}

}  // namespace xltune
