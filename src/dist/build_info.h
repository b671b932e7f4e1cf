// What the dist part was built with, for `xltune version`.
#pragma once

#include <string>

namespace xltune {

// The MPI library's own version string (first line), callable before MPI_Init.
std::string mpi_library_version();
// "2.21.5" when NCCL is compiled in; empty when it is not.
std::string nccl_version();

}  // namespace xltune
