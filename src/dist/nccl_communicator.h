// NCCL for CUDA tensors: the gradient all-reduce of GPU runs (one rank per GPU).
//
// - Bootstrap: rank 0's ncclUniqueId reaches the others through the host communicator (MPI), or,
//   where there is no MPI (a GPU machine with only a CUDA libtorch), through a file on shared
//   storage (written to a temporary name and renamed; the others poll for it), as llm.c's "fs"
//   mode; a world of one needs neither.
// - Streams: collectives run on the communicator's own stream. Each one first waits (an event)
//   for the work queued on the caller's current stream, so it sees finished gradients; its
//   tensor is marked in use on the NCCL stream for the caching allocator (recordStream), and
//   wait() makes the caller's stream wait for it (an event), so nothing blocks the host.
// - Errors: every NCCL and CUDA call is checked; test() and wait() also poll the communicator's
//   asynchronous error (a peer that died, a network error) and turn it into an xltune::Error, so a
//   broken job fails instead of hanging.
// - Timeout (Note [No hang], dist/collective_watchdog.h): each collective is watched from its
//   launch until its event completes; the watchdog's thread queries the events and the
//   asynchronous error once per poll (no spinning), and a collective past --collective_timeout, or
//   an asynchronous error, ends the job: ncclCommAbort (which frees the kernels that wait for a
//   dead peer), then the host's MPI_Abort, then exit.
#pragma once

#include <c10/core/Device.h>

#include <functional>
#include <initializer_list>
#include <memory>
#include <string>

#include "dist/communicator.h"

struct CUstream_st;  // cudaStream_t, without the CUDA headers here

namespace xltune {

class NcclCommunicator final : public Communicator {
 public:
  // Rank and world from `host` (MPI); the unique id broadcast over it.
  NcclCommunicator(Communicator& host, c10::Device device);
  // Without MPI: `id_file` on storage every rank sees (ignored for a world of one).
  NcclCommunicator(int rank, int world, c10::Device device, const std::string& id_file);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "NCCL"; }
  c10::DeviceType device_type() const override { return c10::DeviceType::CUDA; }
  bool sums_bf16() const override { return true; }  // ncclBfloat16 (NCCL 2.10+)
  std::unique_ptr<CommWork> start_all_reduce_sum(const at::Tensor& tensor) override;
  std::unique_ptr<CommWork> start_reduce_scatter_sum(const at::Tensor& input, const at::Tensor& output) override;
  std::unique_ptr<CommWork> start_all_gather(const at::Tensor& input, const at::Tensor& output) override;
  void broadcast(const at::Tensor& tensor, int root) override;
  void barrier() override;
  [[noreturn]] void abort(int code) override;

  // Throws Error if the communicator has failed asynchronously.
  void check_async_error() const;

 protected:
  void poll_collectives() override;

 private:
  struct State;
  void init(const void* unique_id);
  // Issues `call` (one NCCL collective on `stream`) after the current stream's work, marks the
  // tensors used by the NCCL stream for the caching allocator, and returns its completion.
  std::unique_ptr<CommWork> enqueue(const std::string& what, const std::function<void(CUstream_st* stream)>& call,
                                    std::initializer_list<at::Tensor> used);
  int rank_ = 0, size_ = 1;
  c10::Device device_;
  Communicator* host_ = nullptr;
  std::shared_ptr<State> state_;
};

}  // namespace xltune
