#include "dist/build_info.h"

#include <mpi.h>
#ifdef XLTUNE_HAVE_NCCL
#include <nccl.h>
#endif

namespace xltune {

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  if (MPI_Get_library_version(text, &length) != MPI_SUCCESS) return "unknown";
  std::string version(text, static_cast<size_t>(length));
  auto end = version.find_first_of(",\n");
  return end == std::string::npos ? version : version.substr(0, end);
}

std::string nccl_version() {
#ifdef XLTUNE_HAVE_NCCL
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  // NCCL_VERSION_CODE encodes major*10000 + minor*100 + patch (since 2.9).
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
#else
  return "";
#endif
}

}  // namespace xltune
