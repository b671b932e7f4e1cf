#include "train/step_capture.h"

#include "core/check.h"

#ifdef XLTUNE_HAVE_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <map>
#include <utility>
#endif

namespace xltune {

#ifdef XLTUNE_HAVE_CUDA
namespace {

// `waiter` waits for the work queued on `first` so far (ATen's CUDAEvent would pull in headers
// of libraries this unit does not use).
void order_after(const c10::cuda::CUDAStream& first, const c10::cuda::CUDAStream& waiter) {
  cudaEvent_t event = nullptr;
  cudaError_t rc = cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
  if (rc == cudaSuccess) rc = cudaEventRecord(event, first.stream());
  if (rc == cudaSuccess) rc = cudaStreamWaitEvent(waiter.stream(), event, 0);
  if (event != nullptr) cudaEventDestroy(event);  // released once the wait is done
  XLTUNE_CHECK(rc == cudaSuccess, "step capture: ordering two CUDA streams: ", cudaGetErrorString(rc));
}

class CudaStepCapture final : public StepCapture {
 public:
  explicit CudaStepCapture(c10::Device device)
      : device_(device), side_(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index())) {}

  void run_eager(const std::function<void()>& body) override { on_side(body, nullptr); }

  void capture_and_replay(int64_t id, const std::function<void()>& body) override {
    XLTUNE_CHECK(graphs_.count(id) == 0, "step capture: graph ", id, " is captured already");
    auto graph = std::make_unique<at::cuda::CUDAGraph>();
    on_side(body, graph.get());
    if (graphs_.empty()) pool_ = graph->pool();  // the pool the later captures share
    graphs_.emplace(id, std::move(graph));
    // The pool now holds a step's memory; the blocks the eager warm-ups cached for the side
    // stream would stay reserved beside it for nothing.
    c10::cuda::CUDACachingAllocator::emptyCache();
    replay(id);
  }

  void replay(int64_t id) override {
    auto it = graphs_.find(id);
    XLTUNE_CHECK(it != graphs_.end(), "step capture: replay of graph ", id, " before its capture");
    c10::cuda::CUDAGuard on_device(device_);
    it->second->replay();
  }

  bool captured(int64_t id) const override { return graphs_.count(id) != 0; }

  void drop(int64_t id) override {
    graphs_.erase(id);
    // With no graph left the pool goes with the last one; the next capture starts a new one.
    if (graphs_.empty()) pool_ = Pool{0, 0};
  }

 private:
  using Pool = decltype(std::declval<at::cuda::CUDAGraph&>().pool());

  // The side stream waits for the current stream's work, runs `body` (captured into `graph`,
  // when given), and the current stream waits for it in turn: callers see one stream's order.
  void on_side(const std::function<void()>& body, at::cuda::CUDAGraph* graph) {
    c10::cuda::CUDAGuard on_device(device_);
    c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(device_.index());
    order_after(current, side_);
    {
      c10::cuda::CUDAStreamGuard on_side_stream(side_);
      if (graph != nullptr) {
        graph->capture_begin(pool_);  // {0, 0} for the first graph: a new pool
        body();  // on an error the graph is destroyed unfinished; the run ends with the error
        graph->capture_end();
      } else {
        body();
      }
    }
    order_after(side_, current);
  }

  c10::Device device_;
  c10::cuda::CUDAStream side_;
  std::map<int64_t, std::unique_ptr<at::cuda::CUDAGraph>> graphs_;
  Pool pool_{0, 0};
};

}  // namespace

std::unique_ptr<StepCapture> StepCapture::make(c10::Device device) {
  XLTUNE_CHECK(device.is_cuda(), "step capture: CUDA graphs need a CUDA device, not ", device.str());
  return std::make_unique<CudaStepCapture>(device);
}
#else
std::unique_ptr<StepCapture> StepCapture::make(c10::Device device) {
  XLTUNE_FAIL("step capture: this xltune was built without CUDA, so it cannot capture the step on ", device.str(),
              " (--cuda_graph false, or build against a CUDA libtorch)");
}
#endif

}  // namespace xltune
