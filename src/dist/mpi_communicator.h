// MPI for CPU tensors: the communicator of CPU runs under mpirun or srun (and the bootstrap of
// NCCL on GPUs). One per process: the constructor initialises MPI (MPI_THREAD_FUNNELED: every
// MPI call is made on the thread that runs the training loop; CPU autograd runs its hooks on that
// thread too), the destructor finalises it.
//
// Errors are returned, not fatal (MPI_ERRORS_RETURN), and become xltune::Error naming the call
// and the step; a rank that fails calls abort(), which takes the whole job down at once
// (MPI_Abort) instead of leaving the other ranks waiting in a collective. Every collective is
// watched from its start to its completion (Note [No hang], dist/collective_watchdog.h): one that
// a frozen peer never completes is aborted by the watchdog's thread. That is the one MPI call
// made off the loop's thread under MPI_THREAD_FUNNELED: MPI_Abort, which Open MPI serves through
// its runtime (the daemon kills every rank), and after which the process exits regardless.
#pragma once

#include <memory>

#include "dist/communicator.h"

namespace xltune {

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator();
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }
  std::string name() const override { return "MPI"; }
  std::unique_ptr<CommWork> start_all_reduce_sum(const at::Tensor& tensor) override;
  std::unique_ptr<CommWork> start_reduce_scatter_sum(const at::Tensor& input, const at::Tensor& output) override;
  std::unique_ptr<CommWork> start_all_gather(const at::Tensor& input, const at::Tensor& output) override;
  void broadcast(const at::Tensor& tensor, int root) override;
  // MPI_Ibarrier polled with short sleeps: ranks waiting while rank 0 preprocesses leave the
  // cores to it (a blocking MPI_Barrier busy-polls in Open MPI).
  void barrier() override;
  [[noreturn]] void abort(int code) override;

  // True when MPI was already initialised by this process (a second communicator is an error).
  static bool initialized();

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  void* local_comm_ = nullptr;  // MPI_Comm of this node's ranks
};

}  // namespace xltune
