// Who this process is among the ranks of a job, read from what the launcher set: Open MPI's
// mpirun (OMPI_COMM_WORLD_*), Slurm's srun (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID), PMIx,
// or torchrun-style RANK / WORLD_SIZE / LOCAL_RANK. Nothing here talks to MPI: it is known
// before MPI_Init, so logging can carry the rank from the first line.
#pragma once

#include <map>
#include <string>

namespace xltune {

struct WorldInfo {
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  std::string launcher = "none";  // "mpirun", "slurm", "pmix", "env" or "none"
};

// `env` maps variable names to values (tests pass their own; the program passes environ).
WorldInfo world_from_environment(const std::map<std::string, std::string>& env);
WorldInfo world_from_process_environment();

}  // namespace xltune
