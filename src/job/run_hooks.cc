#include "job/run_hooks.h"

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "core/check.h"
#include "job/stop_signal.h"

namespace xltune {
namespace {

// The value of `variable`, "" when unset.
std::string env_or_empty(const char* variable) {
  const char* value = std::getenv(variable);
  return value == nullptr ? std::string() : std::string(value);
}

}  // namespace

ProcessRunHooks::ProcessRunHooks() {
  // STEP or STEP:BYTES; a variable that does not parse injects nothing, as before the hooks.
  long long s = -1, b = 0;
  if (std::sscanf(env_or_empty("XLTUNE_FAULT_CHECKPOINT").c_str(), "%lld:%lld", &s, &b) >= 1)
    write_fault_.step = s, write_fault_.bytes = b;
  s = -1;
  if (std::sscanf(env_or_empty("XLTUNE_FAULT_KILL_IN_CHECKPOINT").c_str(), "%lld", &s) == 1) kill_fault_.step = s;
  // R:S; both needed.
  rank_fault_spec_ = env_or_empty("XLTUNE_FAULT_RANK_STEP");
  int r = -1;
  s = -1;
  if (std::sscanf(rank_fault_spec_.c_str(), "%d:%lld", &r, &s) == 2) rank_fault_.rank = r, rank_fault_.step = s;
  // R:S or R:S:N.
  r = -1, s = -1;
  long long n = 1;
  if (std::sscanf(env_or_empty("XLTUNE_FAULT_NAN_BATCH").c_str(), "%d:%lld:%lld", &r, &s, &n) >= 2)
    nan_fault_.rank = r, nan_fault_.step = s, nan_steps_ = n;
}

bool ProcessRunHooks::poison_batch(int rank, int64_t step) {
  return nan_fault_.step >= 0 && rank == nan_fault_.rank && step >= nan_fault_.step && step < nan_fault_.step + nan_steps_;
}

int ProcessRunHooks::stop_signal() { return received_stop_signal(); }

void ProcessRunHooks::before_step(int rank, int64_t step) {
  if (rank_fault_.step >= 0 && rank == rank_fault_.rank && step == rank_fault_.step)
    XLTUNE_FAIL("injected fault (XLTUNE_FAULT_RANK_STEP=", rank_fault_spec_, ")");
}

std::optional<int64_t> ProcessRunHooks::checkpoint_write_budget(int /*rank*/, int64_t step) {
  // Every rank's writes: with ZeRO-1 each rank writes its optimizer shard.
  if (write_fault_.step >= 0 && step == write_fault_.step) return write_fault_.bytes;
  return std::nullopt;
}

void ProcessRunHooks::inside_checkpoint(int64_t step) {
  // SIGKILL, not an exception: the test is of a process that vanishes, leaving no chance to
  // clean up (tests/cli/checkpoint_test.sh, bench/gpu/quickstart_job).
  if (kill_fault_.step >= 0 && step == kill_fault_.step) {
    // The moment, for the test that measures how soon the other ranks end (tests/cli/mpi_train_test.sh).
    const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::fprintf(stderr, "xltune: injected fault (XLTUNE_FAULT_KILL_IN_CHECKPOINT=%lld): SIGKILL at %.3f\n",
                 static_cast<long long>(step), now);
    ::raise(SIGKILL);
  }
}

RunHooks& process_run_hooks() {
  static ProcessRunHooks hooks;
  return hooks;
}

}  // namespace xltune
