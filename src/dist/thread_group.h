// Ranks as threads of one process (in the manner of c10d's fake process groups): a world of W
// communicators that really exchange data, so that the gradient reducer and the loop's
// collectives are tested without MPI. Each rank's communicator is used by one thread. A
// collective runs when every rank has waited for it (start() records, wait() exchanges), and
// sums add the ranks' tensors in rank order, so results are deterministic. abort() throws
// instead of ending the process, and makes every rank's collectives throw from then on (as
// MPI_Abort ends every rank), so a test sees a failing rank take the job down. With a collective
// timeout (Note [No hang]) a collective that the other ranks never join ends the same way: every
// rank's collectives throw the watchdog's message.
#pragma once

#include <memory>
#include <vector>

#include "dist/communicator.h"

namespace xltune {

// `sums_bf16`: bf16 tensors are summed as bf16 (each add rounds, as a hop of NCCL's ring does)
// and sums_bf16() says so, so that tests reach the native path of the bf16 reductions; false
// (the default), they go through an fp32 copy as on MPI (Note [bf16 gradient reduction]).
std::vector<std::shared_ptr<Communicator>> make_thread_group(int world_size, bool sums_bf16 = false);

}  // namespace xltune
