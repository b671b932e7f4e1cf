// Preemption: SIGTERM (a scheduler ending the job) and SIGUSR1 (Slurm's --signal before the time
// limit) ask the run to stop. The handler only sets a flag; the job reads it through its
// RunHooks (job/run_hooks.h: ProcessRunHooks::stop_signal) at each step boundary, the ranks agree
// on it in the step's all-reduce (a signal reaches each rank at its own moment), and every rank
// writes a checkpoint of that step and exits with kExitRequeue, which the batch scripts in
// cluster/ turn into `scontrol requeue`. A second signal while stopping is ignored: the
// checkpoint is being written.
//
// A stop before the first step (start-up included) is agreed at set-up's phase boundaries and ends
// the job with kExitRequeue too, nothing written (job/train_job.cc).
//
// The program installs the handlers (cli/main.cc, before its libraries initialise, for `train`
// only; cli/train_command.cc again), not the job: a signal handler is the process's, and a job run
// in-process by a test must not take over the test's signals.
#pragma once

namespace xltune {

constexpr int kExitRequeue = 75;  // EX_TEMPFAIL: "try again later"

void install_stop_handlers();
int received_stop_signal();  // the signal that asked, 0 if none

}  // namespace xltune
