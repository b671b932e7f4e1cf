#include "cli/launch_world.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <iostream>

#include "core/check.h"
#include "core/log.h"
#include "dist/collective_watchdog.h"
#include "dist/mpi_communicator.h"
#include "dist/world.h"

namespace xltune::cli {

std::unique_ptr<Communicator> launcher_communicator() {
  const WorldInfo w = world_from_process_environment();
  std::unique_ptr<Communicator> comm;
  if (w.launcher == "mpirun" || w.launcher == "pmix" || w.launcher == "slurm") {
    comm = std::make_unique<MpiCommunicator>();
    XLTUNE_CHECK(comm->size() == w.size, "launched as rank ", w.rank, " of ", w.size, " by ", w.launcher,
                 " but MPI sees a world of ", comm->size(), w.launcher == "slurm" ? " (use srun --mpi=pmix)" : "");
  } else {
    XLTUNE_CHECK(w.size == 1, "launched as rank ", w.rank, " of ", w.size, " through ", w.launcher,
                 " variables: xltune's ranks come from mpirun or srun --mpi=pmix");
    comm = std::make_unique<SingleProcessCommunicator>();
  }
  if (comm->size() > 1) {
    set_log_rank(comm->rank());
    // One voice: the other ranks say only what goes wrong (unless a log level is asked for).
    if (comm->rank() != 0 && std::getenv("XLTUNE_LOG_LEVEL") == nullptr) set_log_level(LogLevel::kWarn);
  }
  return comm;
}

void abort_job(Communicator& comm, const char* command, const std::exception& e) {
  std::string what = e.what();
  if (auto* c10 = dynamic_cast<const c10::Error*>(&e)) what = c10->what_without_backtrace();
  const auto nl = what.find('\n');
  // The step too (Note [No hang]): "... error: <why> (at step 7)".
  const int64_t step = current_step();
  std::cerr << "xltune " << command << ": rank " << comm.rank() << " of " << comm.size() << ": error: "
            << what.substr(0, nl) << (step > 0 ? " (" + describe_step(step) + ")" : std::string()) << std::endl;
  comm.abort(1);
  std::abort();  // abort() is [[noreturn]], but an override need not say so: never return from here
}

}  // namespace xltune::cli
