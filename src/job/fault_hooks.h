// Fault injection for the tests, as LevelDB's fault-injecting Env does for its files; every
// variable is unset in real runs.
#pragma once

#include <cstdint>

namespace xltune {

// Whether `variable` (STEP or STEP:BYTES) names `step`; BYTES into *bytes. The checkpoint tests
// (tests/cli/checkpoint_test.sh, Note [Checkpoints]) use
//   XLTUNE_FAULT_CHECKPOINT=STEP:BYTES  writes of the checkpoint of STEP fail (ENOSPC) after BYTES
//   XLTUNE_FAULT_KILL_IN_CHECKPOINT=STEP  rank 0 kills itself (SIGKILL) after writing its files of
//                                         STEP's checkpoint, before the manifest
bool fault_for_step(const char* variable, int64_t step, long long* bytes);
// XLTUNE_FAULT_RANK_STEP=R:S makes rank R raise an error at step S: how the tests show that a
// rank that fails takes the job down (tests/cli/mpi_train_test.sh).
void maybe_inject_fault(int rank, int64_t step);

}  // namespace xltune
