#include "dist/mpi_communicator.h"

#include <ATen/ATen.h>
#include <mpi.h>

#include <chrono>
#include <functional>
#include <thread>

#include "core/check.h"

namespace xltune {

namespace {

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<size_t>(length));
}

// MPI_ERRORS_RETURN: a failed call (a peer gone, under an MPI that reports it) becomes an Error
// naming the call and the step; the command names the rank and aborts the job (cli/launch_world.h).
#define XLTUNE_MPI_CHECK(call, ...)                                                              \
  do {                                                                                           \
    int xltune_mpi_rc_ = (call);                                                                 \
    if (xltune_mpi_rc_ != MPI_SUCCESS)                                                           \
      XLTUNE_FAIL(__VA_ARGS__, " (", describe_step(current_step()), "; ", #call, ": ",         \
                  mpi_error_text(xltune_mpi_rc_), ")");                                          \
  } while (0)

MPI_Datatype mpi_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kLong: return MPI_INT64_T;
    case at::kInt: return MPI_INT32_T;
    case at::kByte: return MPI_UINT8_T;
    // No bf16: MPI has no such type (MPI 4.1 none either); start_all_reduce_sum_bf16 sums an fp32
    // copy (Note [bf16 gradient reduction]). All-gathers move bytes and take any dtype.
    default: XLTUNE_FAIL("MPI: no reduction for ", t.scalar_type(), " tensors (sums are of fp32, fp64 or integers)");
  }
}

void check_cpu_contiguous(const at::Tensor& t, const char* what) {
  XLTUNE_CHECK(t.is_cpu() && t.is_contiguous(), "MPI ", what, ": expected a contiguous CPU tensor (CUDA tensors go ",
               "through NCCL)");
  XLTUNE_CHECK(t.numel() < (int64_t{1} << 31), "MPI ", what, ": ", t.numel(), " elements is more than one call takes");
}

// Whether `part` is whole.narrow(0, rank * part.numel(), part.numel()).
bool is_rank_slice(const at::Tensor& part, const at::Tensor& whole, int rank) {
  return part.data_ptr() == static_cast<char*>(whole.data_ptr()) + rank * part.numel() * part.element_size();
}

// A collective in flight, watched (Note [No hang]) until it completes.
class MpiWork final : public CommWork {
 public:
  MpiWork(MPI_Request r, CollectiveWatchdog::Watch watch, at::Tensor t, at::Tensor t2 = at::Tensor(),
          std::function<void()> then = nullptr)
      : request_(r), watch_(std::move(watch)), tensor_(std::move(t)), other_(std::move(t2)), then_(std::move(then)) {}
  ~MpiWork() override {
    if (!done_) MPI_Wait(&request_, MPI_STATUS_IGNORE);
  }
  bool test() override {
    if (done_) return true;
    int flag = 0;
    XLTUNE_MPI_CHECK(MPI_Test(&request_, &flag, MPI_STATUS_IGNORE), "MPI collective");
    if (flag != 0) finished();
    return done_;
  }
  void wait() override {
    if (done_) return;
    XLTUNE_MPI_CHECK(MPI_Wait(&request_, MPI_STATUS_IGNORE), "MPI collective");
    finished();
  }

 private:
  void finished() {
    done_ = true;
    watch_.reset();
    if (then_) then_();
  }
  MPI_Request request_;
  CollectiveWatchdog::Watch watch_;
  at::Tensor tensor_, other_;  // kept alive while MPI reads and writes them
  std::function<void()> then_;
  bool done_ = false;
};

}  // namespace

bool MpiCommunicator::initialized() {
  int flag = 0;
  MPI_Initialized(&flag);
  return flag != 0;
}

MpiCommunicator::MpiCommunicator() {
  XLTUNE_CHECK(!initialized(), "MPI is already initialised in this process");
  int provided = 0;
  XLTUNE_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "cannot start MPI");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  XLTUNE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI rank");
  XLTUNE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI world size");
  auto* local = new MPI_Comm;
  XLTUNE_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, local),
                   "MPI: split the ranks by node");
  XLTUNE_MPI_CHECK(MPI_Comm_rank(*local, &local_rank_), "MPI local rank");
  XLTUNE_MPI_CHECK(MPI_Comm_size(*local, &local_size_), "MPI local size");
  local_comm_ = local;
}

MpiCommunicator::~MpiCommunicator() {
  stop_watchdog();
  if (local_comm_ != nullptr) {
    auto* local = static_cast<MPI_Comm*>(local_comm_);
    MPI_Comm_free(local);
    delete local;
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

std::unique_ptr<CommWork> MpiCommunicator::start_all_reduce_sum(const at::Tensor& t) {
  check_cpu_contiguous(t, "all-reduce");
  if (t.numel() == 0 || size_ == 1) {
    struct Done final : CommWork {
      bool test() override { return true; }
      void wait() override {}
    };
    return std::make_unique<Done>();
  }
  MPI_Request request;
  CollectiveWatchdog::Watch watch = watch_collective(str("all-reduce of ", t.numel(), " values"));
  XLTUNE_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), mpi_type(t), MPI_SUM,
                                  MPI_COMM_WORLD, &request),
                   "MPI all-reduce of ", t.numel(), " values");
  return std::make_unique<MpiWork>(request, std::move(watch), t);
}

std::unique_ptr<CommWork> MpiCommunicator::start_reduce_scatter_sum(const at::Tensor& in, const at::Tensor& out) {
  check_cpu_contiguous(in, "reduce-scatter");
  check_cpu_contiguous(out, "reduce-scatter");
  XLTUNE_CHECK(in.numel() == out.numel() * size_ && in.scalar_type() == out.scalar_type(), "MPI reduce-scatter: ",
               in.numel(), " values in, ", out.numel(), " out, for ", size_, " ranks");
  MPI_Request request;
  CollectiveWatchdog::Watch watch = watch_collective(str("reduce-scatter of ", in.numel(), " values"));
  if (is_rank_slice(out, in, rank_)) {
    // MPI's in-place form leaves the result at the start of the buffer; it moves to the rank's
    // slice when done (the two do not overlap for rank > 0).
    XLTUNE_MPI_CHECK(MPI_Ireduce_scatter_block(MPI_IN_PLACE, in.data_ptr(), static_cast<int>(out.numel()),
                                               mpi_type(out), MPI_SUM, MPI_COMM_WORLD, &request),
                     "MPI reduce-scatter of ", in.numel(), " values");
    const int rank = rank_;
    return std::make_unique<MpiWork>(request, std::move(watch), in, out, [in, out, rank] {
      if (rank > 0) {
        at::NoGradGuard no_grad;
        at::Tensor o = out;
        o.copy_(in.narrow(0, 0, out.numel()));
      }
    });
  }
  XLTUNE_MPI_CHECK(MPI_Ireduce_scatter_block(in.data_ptr(), out.data_ptr(), static_cast<int>(out.numel()), mpi_type(out),
                                             MPI_SUM, MPI_COMM_WORLD, &request),
                   "MPI reduce-scatter of ", in.numel(), " values");
  return std::make_unique<MpiWork>(request, std::move(watch), in, out);
}

std::unique_ptr<CommWork> MpiCommunicator::start_all_gather(const at::Tensor& in, const at::Tensor& out) {
  check_cpu_contiguous(in, "all-gather");
  check_cpu_contiguous(out, "all-gather");
  XLTUNE_CHECK(out.numel() == in.numel() * size_ && in.scalar_type() == out.scalar_type(), "MPI all-gather: ",
               in.numel(), " values in, ", out.numel(), " out, for ", size_, " ranks");
  // As bytes: nothing is added, so any dtype travels (bf16 parameters: Note [bf16 gradient reduction]).
  XLTUNE_CHECK(in.nbytes() < (size_t{1} << 31), "MPI all-gather: ", in.nbytes(),
               " bytes per rank is more than one call takes");
  MPI_Request request;
  CollectiveWatchdog::Watch watch = watch_collective(str("all-gather of ", out.numel(), " values"));
  const bool in_place = is_rank_slice(in, out, rank_);
  XLTUNE_MPI_CHECK(MPI_Iallgather(in_place ? MPI_IN_PLACE : in.data_ptr(), static_cast<int>(in.nbytes()), MPI_BYTE,
                                  out.data_ptr(), static_cast<int>(in.nbytes()), MPI_BYTE, MPI_COMM_WORLD, &request),
                   "MPI all-gather of ", out.numel(), " values");
  return std::make_unique<MpiWork>(request, std::move(watch), in, out);
}

void MpiCommunicator::broadcast(const at::Tensor& t, int root) {
  check_cpu_contiguous(t, "broadcast");
  if (t.numel() == 0 || size_ == 1) return;
  const CollectiveWatchdog::Watch watch = watch_collective(str("broadcast from rank ", root));
  XLTUNE_MPI_CHECK(MPI_Bcast(t.data_ptr(), static_cast<int>(t.nbytes()), MPI_BYTE, root, MPI_COMM_WORLD),
                   "MPI broadcast from rank ", root);
}

void MpiCommunicator::barrier() {
  MPI_Request request;
  const CollectiveWatchdog::Watch watch = watch_collective("barrier");
  XLTUNE_MPI_CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &request), "MPI barrier");
  for (int flag = 0;;) {
    XLTUNE_MPI_CHECK(MPI_Test(&request, &flag, MPI_STATUS_IGNORE), "MPI barrier");
    if (flag) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void MpiCommunicator::abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace xltune
