// The ranks of a job as the training loop sees them: one small interface, so that the loop,
// the gradient reducer and the checkpointer are written once for every transport.
//
//   SingleProcessCommunicator   world of one (no launcher): every collective is the identity
//   (issue 9) MPI for CPU tensors, NCCL for CUDA tensors, and an in-process fake for tests
//
// This header and the single-process communicator use libtorch alone, so they build in
// -DXLTUNE_CORE_ONLY=ON (a GPU machine with a CUDA libtorch and no MPI).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace xltune {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;  // "single process", "MPI", "NCCL"
  // In place: every rank ends with the sum over ranks.
  virtual void all_reduce_sum(at::Tensor& tensor) = 0;
  // In place: every rank ends with root's values.
  virtual void broadcast(at::Tensor& tensor, int root) = 0;
  virtual void barrier() = 0;
};

class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "single process"; }
  void all_reduce_sum(at::Tensor&) override {}
  void broadcast(at::Tensor&, int root) override;
  void barrier() override {}
};

}  // namespace xltune
