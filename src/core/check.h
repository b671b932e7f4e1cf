// Check macros in the manner of llm.c: every condition that input can break and every call
// into a C library is wrapped, and a failure becomes an xltune::Error naming file and line.
//
//   XLTUNE_CHECK(n > 0, "option --resolution: expected a positive number, got ", n);
//   XLTUNE_CHECK_ERRNO(::fsync(fd), "fsync ", path);          // -1 means failure, errno says why
//   XLTUNE_FAIL("unknown dtype '", name, "'");
//
// Libraries with their own status codes (MPI, NCCL, HDF5, CUDA) get macros in their own part
// built on xltune::raise_error, so core does not depend on them.
#pragma once

#include <cerrno>
#include <cstring>

#include "core/error.h"

#define XLTUNE_FAIL(...) ::xltune::raise_error(__FILE__, __LINE__, ::xltune::str(__VA_ARGS__))

#define XLTUNE_CHECK(cond, ...)                  \
  do {                                           \
    if (!(cond)) XLTUNE_FAIL(__VA_ARGS__);       \
  } while (0)

#define XLTUNE_CHECK_ERRNO(call, ...)                                                  \
  do {                                                                                 \
    if ((call) == -1) {                                                                \
      int xltune_errno_ = errno;                                                       \
      XLTUNE_FAIL(__VA_ARGS__, ": ", std::strerror(xltune_errno_));                    \
    }                                                                                  \
  } while (0)
