// The ranks of a command that runs on many: MPI when a launcher started this process (mpirun,
// or srun with PMIx), else one process. Logs carry the rank and only rank 0 speaks (unless
// XLTUNE_LOG_LEVEL is set) when there are several.
#pragma once

#include <memory>

#include "dist/communicator.h"

namespace xltune::cli {

std::unique_ptr<Communicator> launcher_communicator();

// A failing rank takes the whole job down now, naming itself and the step ("xltune COMMAND: rank R
// of W: error: ... (at step S)"), instead of leaving the others waiting in a collective.
[[noreturn]] void abort_job(Communicator& comm, const char* command, const std::exception& e);

}  // namespace xltune::cli
