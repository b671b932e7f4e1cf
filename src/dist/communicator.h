// The ranks of a job as the training loop sees them: one small interface, so that the loop,
// the gradient reducer and the checkpointer are written once for every transport.
//
//   SingleProcessCommunicator   world of one (no launcher): every collective is the identity
//   ThreadGroupCommunicator     ranks as threads of one process, for unit tests (thread_group.h)
//   MpiCommunicator             MPI for CPU tensors (mpi_communicator.h; full builds)
//   NcclCommunicator            NCCL for CUDA tensors (nccl_communicator.h; CUDA builds)
//
// Collectives are issued in the same order on every rank (the caller's duty; the reducer
// launches its buckets strictly in bucket order). This header, the single-process and the
// thread-group communicators use libtorch alone, so they build in -DXLTUNE_CORE_ONLY=ON.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "dist/collective_watchdog.h"

namespace xltune {

// A collective in flight. The tensor it works on stays alive until it is done.
class CommWork {
 public:
  virtual ~CommWork() = default;
  // Drives progress without blocking; true once the result is in the tensor.
  virtual bool test() = 0;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Ranks on this node and this rank's index among them (from the shared-memory split).
  virtual int local_rank() const { return 0; }
  virtual int local_size() const { return 1; }
  virtual std::string name() const = 0;  // "single process", "MPI", "NCCL", "threads"
  // Where the tensors it reduces must live: kCUDA for NCCL, kCPU for the others (MPI here is not
  // CUDA-aware). Callers move small tensors (a norm, a loss) to it.
  virtual c10::DeviceType device_type() const { return c10::DeviceType::CPU; }
  // Whether its sums take bf16 tensors natively (NCCL: each hop adds in fp32 and rounds to bf16).
  // Where not (MPI has no bf16 type; the thread group by default), start_all_reduce_sum_bf16 and
  // start_reduce_scatter_sum_bf16 below sum an fp32 copy (Note [bf16 gradient reduction]).
  virtual bool sums_bf16() const { return false; }

  // In place: every rank ends with the sum over ranks. The tensor must be contiguous.
  virtual std::unique_ptr<CommWork> start_all_reduce_sum(const at::Tensor& tensor) = 0;
  void all_reduce_sum(const at::Tensor& tensor) { start_all_reduce_sum(tensor)->wait(); }
  // input [W * n] on every rank; output [n] on rank r: the sum over ranks of input[r n, (r+1) n).
  // In place when output is input's own slice, input.narrow(0, r n, n) (as NCCL's): the rest of
  // input is then undefined afterwards.
  virtual std::unique_ptr<CommWork> start_reduce_scatter_sum(const at::Tensor& input, const at::Tensor& output) = 0;
  // input [n] on every rank; output [W * n] everywhere: rank r's input at [r n, (r+1) n). In
  // place when input is output.narrow(0, r n, n).
  virtual std::unique_ptr<CommWork> start_all_gather(const at::Tensor& input, const at::Tensor& output) = 0;
  // In place: every rank ends with root's values.
  virtual void broadcast(const at::Tensor& tensor, int root) = 0;
  // Returns once every rank has called it (without spinning a core while it waits).
  virtual void barrier() = 0;
  // Ends every rank of the job at once with `code` (MPI_Abort); a world of one just exits.
  [[noreturn]] virtual void abort(int code);

  // Note [No hang] (dist/collective_watchdog.h): from now on a collective of this rank that is
  // outstanding for longer than `seconds` ends the job, naming the rank and the step; 0: never.
  // A world of one waits for no one and keeps no watchdog.
  void set_collective_timeout(double seconds);
  // The collectives this rank starts while the scope lives wait without the timeout: for the
  // wait whose length is another rank's unbounded work (rank 0's preprocessing).
  CollectiveWatchdog::UntimedScope untimed_collectives() { return CollectiveWatchdog::UntimedScope(watchdog_); }

 protected:
  // The collective `what` starts now and is watched until the handle goes (an empty handle
  // without a timeout). Communicators call it for every collective they start.
  CollectiveWatchdog::Watch watch_collective(std::string what);
  // The watchdog's thread, when a collective ran out of time: logs `message` and abort(1).
  virtual void collective_timed_out(const std::string& message);
  // The watchdog's thread, at every poll (NCCL checks its events and its asynchronous error).
  virtual void poll_collectives() {}
  // Ends the watchdog's thread. Every communicator that has one calls it first in its destructor,
  // so that the thread never calls into a half-destroyed communicator.
  void stop_watchdog();

 private:
  std::shared_ptr<CollectiveWatchdog> watchdog_;
};

class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "single process"; }
  std::unique_ptr<CommWork> start_all_reduce_sum(const at::Tensor& tensor) override;
  std::unique_ptr<CommWork> start_reduce_scatter_sum(const at::Tensor& input, const at::Tensor& output) override;
  std::unique_ptr<CommWork> start_all_gather(const at::Tensor& input, const at::Tensor& output) override;
  void broadcast(const at::Tensor& tensor, int root) override;
  void barrier() override {}
};

// bf16 sums on any communicator (Note [bf16 gradient reduction]): natively where sums_bf16(),
// else through an fp32 copy of `tensor` / `input`, summed, and rounded back into the bf16 tensor /
// `output` when done (no bandwidth saved then; the numerics are NCCL's up to the rounding of
// partial sums: equal for 2 ranks, within a bf16 ulp of the sum per extra rank). Arguments as
// start_all_reduce_sum's and start_reduce_scatter_sum's, all bf16.
std::unique_ptr<CommWork> start_all_reduce_sum_bf16(Communicator& comm, const at::Tensor& tensor);
std::unique_ptr<CommWork> start_reduce_scatter_sum_bf16(Communicator& comm, const at::Tensor& input,
                                                        const at::Tensor& output);

// Sums of a few doubles over ranks (loss, counts), through a small CPU (or device) tensor.
std::vector<double> all_reduce_sum_values(Communicator& comm, const std::vector<double>& values,
                                          const at::Device& device);

}  // namespace xltune
