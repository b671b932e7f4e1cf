#include "dist/nccl_communicator.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/log.h"
#include "dist/id_file.h"

namespace xltune {

#define XLTUNE_CUDA_CHECK(call, ...)                                                                  \
  do {                                                                                                \
    cudaError_t xltune_cuda_rc_ = (call);                                                             \
    if (xltune_cuda_rc_ != cudaSuccess)                                                               \
      XLTUNE_FAIL(__VA_ARGS__, " (", #call, ": ", cudaGetErrorString(xltune_cuda_rc_), ")");           \
  } while (0)

#define XLTUNE_NCCL_CHECK(call, ...)                                                                  \
  do {                                                                                                \
    ncclResult_t xltune_nccl_rc_ = (call);                                                            \
    if (xltune_nccl_rc_ != ncclSuccess)                                                               \
      XLTUNE_FAIL(__VA_ARGS__, " (", #call, ": ", ncclGetErrorString(xltune_nccl_rc_), ")");           \
  } while (0)

// A collective's completion on the NCCL stream, shared by its work and the watchdog's list.
using SharedEvent = std::shared_ptr<CUevent_st>;

struct NcclCommunicator::State {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  std::atomic<bool> aborted{false};  // also read by the watchdog's thread
  // Note [No hang]: the collectives queued and not yet seen done, each watched until its event
  // completes (the host never waits for them, so only their events say when they end).
  std::mutex pending_mutex;
  std::vector<std::pair<SharedEvent, CollectiveWatchdog::Watch>> pending;
};

namespace {

ncclDataType_t nccl_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kBFloat16: return ncclBfloat16;
    case at::kHalf: return ncclFloat16;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte: return ncclUint8;
    default: XLTUNE_FAIL("NCCL: no reduction for ", t.scalar_type(), " tensors");
  }
}

class NcclWork final : public CommWork {
 public:
  NcclWork(const NcclCommunicator& owner, SharedEvent done, c10::Device device)
      : owner_(owner), done_(std::move(done)), device_(device) {}
  bool test() override {
    owner_.check_async_error();
    const cudaError_t rc = cudaEventQuery(done_.get());
    if (rc == cudaErrorNotReady) return false;
    XLTUNE_CUDA_CHECK(rc, "NCCL all-reduce");
    return true;
  }
  void wait() override {
    owner_.check_async_error();
    // The caller's stream waits for the collective; the host does not.
    c10::cuda::CUDAGuard guard(device_);
    XLTUNE_CUDA_CHECK(cudaStreamWaitEvent(c10::cuda::getCurrentCUDAStream(device_.index()).stream(), done_.get(), 0),
                      "NCCL all-reduce: order the compute stream after it");
  }

 private:
  const NcclCommunicator& owner_;
  SharedEvent done_;
  c10::Device device_;
};

// The caller's stream -> the NCCL stream: the collective sees everything queued before it.
void order_after_current(cudaStream_t nccl_stream, c10::Device device) {
  cudaEvent_t ready;
  XLTUNE_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "NCCL: create an event");
  XLTUNE_CUDA_CHECK(cudaEventRecord(ready, c10::cuda::getCurrentCUDAStream(device.index()).stream()), "NCCL: record");
  XLTUNE_CUDA_CHECK(cudaStreamWaitEvent(nccl_stream, ready, 0), "NCCL: order after the compute stream");
  cudaEventDestroy(ready);  // safe: destruction is deferred until the event completes
}

}  // namespace

NcclCommunicator::NcclCommunicator(Communicator& host, c10::Device device)
    : rank_(host.rank()), size_(host.size()), device_(device), host_(&host), state_(std::make_shared<State>()) {
  XLTUNE_CHECK(device.is_cuda(), "NCCL: expected a CUDA device, got ", device.str());
  ncclUniqueId id;
  if (rank_ == 0) XLTUNE_NCCL_CHECK(ncclGetUniqueId(&id), "NCCL: make the communicator's id");
  at::Tensor shared = at::from_blob(&id, {static_cast<int64_t>(sizeof id)}, at::kByte).clone();
  host.broadcast(shared, 0);
  std::memcpy(&id, shared.data_ptr(), sizeof id);
  init(&id);
}

NcclCommunicator::NcclCommunicator(int rank, int world, c10::Device device, const std::string& id_file)
    : rank_(rank), size_(world), device_(device), state_(std::make_shared<State>()) {
  XLTUNE_CHECK(device.is_cuda(), "NCCL: expected a CUDA device, got ", device.str());
  XLTUNE_CHECK(world >= 1 && rank >= 0 && rank < world, "NCCL: rank ", rank, " of ", world);
  // Note in dist/id_file.h: an id file from an earlier run is never taken for this one's.
  const auto started = std::chrono::system_clock::now();
  XLTUNE_CHECK(world == 1 || !id_file.empty(), "NCCL without MPI: ", world, " ranks need a file to share the id through");
  if (world > 1 && rank == 0) clear_id_file(id_file);
  ncclUniqueId id;
  if (rank == 0) XLTUNE_NCCL_CHECK(ncclGetUniqueId(&id), "NCCL: make the communicator's id");
  if (world > 1) {
    if (rank == 0) {
      publish_id_file(id_file, std::string(reinterpret_cast<const char*>(&id), sizeof id));
    } else {
      // Ranks start within seconds of each other: a file older than a minute before this one
      // started belongs to another run.
      const std::string bytes = wait_for_id_file(id_file, sizeof id, started - std::chrono::minutes(1),
                                                 std::chrono::minutes(10), rank);
      std::memcpy(&id, bytes.data(), sizeof id);
    }
  }
  init(&id);
}

void NcclCommunicator::init(const void* unique_id) {
  c10::cuda::CUDAGuard guard(device_);
  XLTUNE_CUDA_CHECK(cudaStreamCreateWithFlags(&state_->stream, cudaStreamNonBlocking), "NCCL: create its stream");
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 1;
  XLTUNE_NCCL_CHECK(ncclCommInitRankConfig(&state_->comm, size_, *static_cast<const ncclUniqueId*>(unique_id), rank_,
                                           &config),
                    "NCCL: rank ", rank_, " of ", size_, " could not join the communicator");
}

NcclCommunicator::~NcclCommunicator() {
  stop_watchdog();
  {
    std::lock_guard<std::mutex> lock(state_->pending_mutex);
    state_->pending.clear();
  }
  if (state_->comm != nullptr && !state_->aborted) ncclCommDestroy(state_->comm);
  if (state_->stream != nullptr) cudaStreamDestroy(state_->stream);
}

void NcclCommunicator::check_async_error() const {
  ncclResult_t async = ncclSuccess;
  XLTUNE_NCCL_CHECK(ncclCommGetAsyncError(state_->comm, &async), "NCCL: query the communicator");
  if (async != ncclSuccess) {
    ncclCommAbort(state_->comm);
    state_->aborted = true;
    XLTUNE_FAIL("NCCL: the communicator failed (", ncclGetErrorString(async), "): a rank died or the network broke");
  }
}

// The watchdog's thread: the collectives whose events completed are released, and an
// asynchronous error (a peer gone, a network failure) ends the job at once, in one line.
void NcclCommunicator::poll_collectives() {
  if (state_->comm == nullptr || state_->aborted) return;
  {
    c10::cuda::CUDAGuard guard(device_);
    std::lock_guard<std::mutex> lock(state_->pending_mutex);
    auto& pending = state_->pending;
    for (size_t i = 0; i < pending.size();) {
      if (cudaEventQuery(pending[i].first.get()) != cudaErrorNotReady) {
        pending[i] = std::move(pending.back());
        pending.pop_back();
      } else {
        ++i;
      }
    }
  }
  ncclResult_t async = ncclSuccess;
  if (ncclCommGetAsyncError(state_->comm, &async) == ncclSuccess && async != ncclSuccess) {
    log_error("rank ", rank_, ": NCCL failed ", describe_step(current_step()), " (", ncclGetErrorString(async),
              "): another rank died or the network broke");
    abort(1);
  }
}

std::unique_ptr<CommWork> NcclCommunicator::enqueue(const std::string& what,
                                                   const std::function<void(cudaStream_t)>& call,
                                                   std::initializer_list<at::Tensor> used) {
  check_async_error();
  CollectiveWatchdog::Watch watch = watch_collective(what);
  c10::cuda::CUDAGuard guard(device_);
  order_after_current(state_->stream, device_);
  call(state_->stream);
  const auto stream = c10::cuda::getStreamFromExternal(state_->stream, device_.index());
  for (const at::Tensor& t : used) c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), stream);
  cudaEvent_t event;
  XLTUNE_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "NCCL: create an event");
  // Destroyed when both the work and the watchdog's list are done with it.
  SharedEvent done(event, [](cudaEvent_t e) { cudaEventDestroy(e); });
  XLTUNE_CUDA_CHECK(cudaEventRecord(done.get(), state_->stream), "NCCL: record");
  if (watch) {
    std::lock_guard<std::mutex> lock(state_->pending_mutex);
    state_->pending.emplace_back(done, std::move(watch));
  }
  return std::make_unique<NcclWork>(*this, std::move(done), device_);
}

std::unique_ptr<CommWork> NcclCommunicator::start_all_reduce_sum(const at::Tensor& t) {
  XLTUNE_CHECK(t.is_cuda() && t.device() == device_ && t.is_contiguous(), "NCCL all-reduce: expected a contiguous ",
               "tensor on ", device_.str());
  return enqueue(
      str("all-reduce of ", t.numel(), " values"),
      [&](cudaStream_t stream) {
        XLTUNE_NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t),
                                        ncclSum, state_->comm, stream),
                          "NCCL all-reduce of ", t.numel(), " values");
      },
      {t});
}

// In place when out is in's slice of this rank (NCCL's own in-place form).
std::unique_ptr<CommWork> NcclCommunicator::start_reduce_scatter_sum(const at::Tensor& in, const at::Tensor& out) {
  XLTUNE_CHECK(in.is_cuda() && out.is_cuda() && in.is_contiguous() && out.is_contiguous() &&
                   in.numel() == out.numel() * size_,
               "NCCL reduce-scatter: expected contiguous CUDA tensors of W n and n values");
  return enqueue(
      str("reduce-scatter of ", in.numel(), " values"),
      [&](cudaStream_t stream) {
        XLTUNE_NCCL_CHECK(ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()),
                                            nccl_type(out), ncclSum, state_->comm, stream),
                          "NCCL reduce-scatter of ", in.numel(), " values");
      },
      {in, out});
}

// In place when in is out's slice of this rank.
std::unique_ptr<CommWork> NcclCommunicator::start_all_gather(const at::Tensor& in, const at::Tensor& out) {
  XLTUNE_CHECK(in.is_cuda() && out.is_cuda() && in.is_contiguous() && out.is_contiguous() &&
                   out.numel() == in.numel() * size_,
               "NCCL all-gather: expected contiguous CUDA tensors of n and W n values");
  return enqueue(
      str("all-gather of ", out.numel(), " values"),
      [&](cudaStream_t stream) {
        XLTUNE_NCCL_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()), nccl_type(in),
                                        state_->comm, stream),
                          "NCCL all-gather of ", out.numel(), " values");
      },
      {in, out});
}

void NcclCommunicator::broadcast(const at::Tensor& t, int root) {
  XLTUNE_CHECK(t.is_cuda() && t.device() == device_ && t.is_contiguous(), "NCCL broadcast: expected a contiguous ",
               "tensor on ", device_.str());
  c10::cuda::CUDAGuard guard(device_);
  const CollectiveWatchdog::Watch watch = watch_collective(str("broadcast from rank ", root));
  order_after_current(state_->stream, device_);
  XLTUNE_NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t), root,
                                  state_->comm, state_->stream),
                    "NCCL broadcast from rank ", root);
  XLTUNE_CUDA_CHECK(cudaStreamSynchronize(state_->stream), "NCCL broadcast");
  check_async_error();
}

void NcclCommunicator::barrier() {
  if (host_ != nullptr) return host_->barrier();  // a host barrier does not occupy the GPU
  at::Tensor one = at::ones({1}, at::TensorOptions().dtype(at::kFloat).device(device_));
  start_all_reduce_sum(one)->wait();
  c10::cuda::CUDAGuard guard(device_);
  XLTUNE_CUDA_CHECK(cudaStreamSynchronize(c10::cuda::getCurrentCUDAStream(device_.index()).stream()), "NCCL barrier");
}

void NcclCommunicator::abort(int code) {
  if (state_->comm != nullptr && !state_->aborted) ncclCommAbort(state_->comm);
  state_->aborted = true;
  if (host_ != nullptr) host_->abort(code);
  std::_Exit(code);
}

}  // namespace xltune
