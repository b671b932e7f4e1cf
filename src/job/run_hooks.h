// What the training job asks of the world around it besides its communicator: whether it was
// asked to stop, and the faults a test injects. LevelDB passes an Env to its database for the
// same reason: the job reads no environment variable and no process-global flag of its own, so
// that a test can run it in-process (ranks as threads, tests/job/train_job_test.cc) with a fake
// that stops it or breaks it at a chosen step, where a debugger and a sanitizer see it.
//
// ProcessRunHooks is what `xltune train` passes: the stop signals that the command installs
// (job/stop_signal.h) and the XLTUNE_FAULT_* variables of the shell tests, each unset in real
// runs (Note [Checkpoints], tests/cli/checkpoint_test.sh, tests/cli/mpi_train_test.sh):
//   XLTUNE_FAULT_CHECKPOINT=STEP:BYTES    writes of the checkpoint of STEP fail (ENOSPC) after BYTES
//   XLTUNE_FAULT_KILL_IN_CHECKPOINT=STEP  rank 0 kills itself (SIGKILL) after writing its files of
//                                         STEP's checkpoint, before the manifest
//   XLTUNE_FAULT_RANK_STEP=R:S            rank R raises an error at step S (a failing rank takes
//                                         the job down)
//   XLTUNE_FAULT_NAN_BATCH=R:S[:N]        rank R's samples of steps S .. S+N-1 (N = 1 when absent)
//                                         are NaN (Note [Skipped steps])
//
// A rank calls its hooks from its own thread only. Ranks that are threads of a test may hold
// one fake each, as ranks that are processes hold one ProcessRunHooks each.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace xltune {

class RunHooks {
 public:
  virtual ~RunHooks() = default;

  // The signal that asked this rank to stop (SIGTERM, SIGUSR1), 0 while none has. Read at each
  // step boundary; the ranks agree on it in the step's all-reduce, since a signal reaches each
  // rank at its own moment (job/stop_signal.h).
  virtual int stop_signal() = 0;

  // Called by each rank before training `step`: throws when the rank must fail there.
  virtual void before_step(int rank, int64_t step) = 0;

  // How many bytes this rank may write of the checkpoint of `step` before its writes fail with
  // ENOSPC; nullopt: they do not fail. The checkpoint writer applies it through
  // core/atomic_file.h's fault::fail_writes_after, whose budget is per thread, so that it reaches
  // this rank's writes only. The budget is not passed down instead: every writer of the
  // checkpoint's files (safetensors, the export files, the tar's) opens its own AtomicFile, and a
  // test's parameter on each of their signatures would cost more than the per-thread budget.
  virtual std::optional<int64_t> checkpoint_write_budget(int rank, int64_t step) = 0;

  // Called by rank 0 once its files of the checkpoint of `step` are durable, before the barrier
  // and the manifest: the moment a crash leaves a checkpoint without a manifest. Production may
  // not return (SIGKILL); a fake throws.
  virtual void inside_checkpoint(int64_t step) = 0;
  // Whether this rank's samples of `step` are to be NaN: a bad batch on one rank, which every
  // rank must skip together (Note [Skipped steps]).
  virtual bool poison_batch(int rank, int64_t step) {
    (void)rank, (void)step;
    return false;
  }
};

// Production's: signals as the command installed them, faults from the XLTUNE_FAULT_*
// variables (read once, on first use).
class ProcessRunHooks final : public RunHooks {
 public:
  ProcessRunHooks();
  int stop_signal() override;
  void before_step(int rank, int64_t step) override;
  std::optional<int64_t> checkpoint_write_budget(int rank, int64_t step) override;
  void inside_checkpoint(int64_t step) override;
  bool poison_batch(int rank, int64_t step) override;

 private:
  struct StepFault {
    int64_t step = -1;  // -1: none
    int64_t bytes = 0;  // XLTUNE_FAULT_CHECKPOINT's BYTES
    int rank = -1;      // XLTUNE_FAULT_RANK_STEP's R
  };
  StepFault write_fault_, kill_fault_, rank_fault_, nan_fault_;
  int64_t nan_steps_ = 1;  // XLTUNE_FAULT_NAN_BATCH's N
  std::string rank_fault_spec_;  // for the error, which tests/cli/mpi_train_test.sh reads
};

// The one ProcessRunHooks of the process (run_train_job's default).
RunHooks& process_run_hooks();

}  // namespace xltune
