// Ranks as threads of one process (in the manner of c10d's fake process groups): a world of W
// communicators that really exchange data, so that the gradient reducer and the loop's
// collectives are tested without MPI. Each rank's communicator is used by one thread. A
// collective runs when every rank has waited for it (start() records, wait() exchanges), and
// sums add the ranks' tensors in rank order, so results are deterministic.
#pragma once

#include <memory>
#include <vector>

#include "dist/communicator.h"

namespace xltune {

std::vector<std::shared_ptr<Communicator>> make_thread_group(int world_size);

}  // namespace xltune
