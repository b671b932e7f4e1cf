#include "dist/world.h"

#include <cstdlib>

#include "core/check.h"

extern char** environ;

namespace xltune {

namespace {
int read_int(const std::map<std::string, std::string>& env, const std::string& name, int fallback) {
  auto it = env.find(name);
  if (it == env.end() || it->second.empty()) return fallback;
  char* end = nullptr;
  long v = std::strtol(it->second.c_str(), &end, 10);
  XLTUNE_CHECK(*end == '\0' && v >= 0 && v < (1L << 24), "environment ", name,
               ": expected a non-negative integer, got '", it->second, "'");
  return static_cast<int>(v);
}

bool has(const std::map<std::string, std::string>& env, const char* name) { return env.count(name) != 0; }
}  // namespace

WorldInfo world_from_environment(const std::map<std::string, std::string>& env) {
  WorldInfo w;
  // Most specific launcher first: mpirun inside a Slurm allocation sets both, and mpirun's
  // numbering is the one MPI_COMM_WORLD will have.
  if (has(env, "OMPI_COMM_WORLD_RANK")) {
    w.launcher = "mpirun";
    w.rank = read_int(env, "OMPI_COMM_WORLD_RANK", 0);
    w.size = read_int(env, "OMPI_COMM_WORLD_SIZE", 1);
    w.local_rank = read_int(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0);
  } else if (has(env, "PMIX_RANK")) {
    w.launcher = "pmix";
    w.rank = read_int(env, "PMIX_RANK", 0);
    w.size = read_int(env, "SLURM_NTASKS", read_int(env, "PMIX_SIZE", 1));
    w.local_rank = read_int(env, "SLURM_LOCALID", 0);
  } else if (has(env, "SLURM_PROCID") && has(env, "SLURM_NTASKS")) {
    w.launcher = "slurm";
    w.rank = read_int(env, "SLURM_PROCID", 0);
    w.size = read_int(env, "SLURM_NTASKS", 1);
    w.local_rank = read_int(env, "SLURM_LOCALID", 0);
  } else if (has(env, "RANK") && has(env, "WORLD_SIZE")) {
    w.launcher = "env";
    w.rank = read_int(env, "RANK", 0);
    w.size = read_int(env, "WORLD_SIZE", 1);
    w.local_rank = read_int(env, "LOCAL_RANK", 0);
  }
  XLTUNE_CHECK(w.size >= 1 && w.rank < w.size, "launcher ", w.launcher, " says rank ", w.rank, " of ", w.size,
               ": expected a rank below the world size");
  return w;
}

WorldInfo world_from_process_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return world_from_environment(env);
}

}  // namespace xltune
