#include "dist/thread_group.h"

#include <ATen/ATen.h>

#include <condition_variable>
#include <mutex>
#include <string>

#include "core/check.h"

namespace xltune {

namespace {

// One rendezvous for all ranks: each collective is a generation; the last rank to arrive does
// the work and wakes the others.
struct Rendezvous {
  explicit Rendezvous(int w) : world(w), slots(static_cast<size_t>(w)) {}
  int world;
  std::mutex mutex;
  std::condition_variable changed;
  uint64_t generation = 0;
  int arrived = 0;
  std::vector<at::Tensor> slots;
  at::Tensor result;

  std::vector<at::Tensor> outputs;
  // Set by a rank's abort(): why the job ended. Every collective then throws it, those waiting
  // and those yet to come, as MPI_Abort ends every process of a job.
  std::string aborted;

  void abort(int rank, int code) {
    abort_with("rank " + std::to_string(rank) + " of " + std::to_string(world) + " aborted the job (code " +
               std::to_string(code) + ")");
  }
  void abort_with(const std::string& why) {
    std::lock_guard<std::mutex> lock(mutex);
    if (aborted.empty()) aborted = why;
    changed.notify_all();
  }

  // kind 0: sum, 1: broadcast from `root`, 2: barrier, 3: reduce-scatter, 4: all-gather
  // (for 3 and 4, `out` is the rank's output tensor).
  void exchange(int rank, const at::Tensor& t, int kind, int root, const at::Tensor& out = at::Tensor()) {
    at::NoGradGuard no_grad;
    std::unique_lock<std::mutex> lock(mutex);
    if (!aborted.empty()) XLTUNE_FAIL(aborted);
    const uint64_t my_generation = generation;
    slots[static_cast<size_t>(rank)] = t;
    if (outputs.size() != slots.size()) outputs.resize(slots.size());
    outputs[static_cast<size_t>(rank)] = out;
    if (++arrived == world) {
      if (kind == 0 || kind == 3) {
        result = slots[0].clone();
        for (int r = 1; r < world; ++r) result.add_(slots[static_cast<size_t>(r)]);
      } else if (kind == 1) {
        result = slots[static_cast<size_t>(root)].clone();
      } else if (kind == 4) {
        std::vector<at::Tensor> parts(slots.begin(), slots.end());
        result = at::cat(parts);
      }
      for (int r = 0; r < world; ++r) {
        at::Tensor s = slots[static_cast<size_t>(r)];
        if (kind == 0 || kind == 1) s.copy_(result);
        if (kind == 3) {
          at::Tensor o = outputs[static_cast<size_t>(r)];
          o.copy_(result.narrow(0, r * o.numel(), o.numel()));
        }
        if (kind == 4) outputs[static_cast<size_t>(r)].copy_(result);
        slots[static_cast<size_t>(r)] = at::Tensor();
        outputs[static_cast<size_t>(r)] = at::Tensor();
      }
      arrived = 0;
      ++generation;
      changed.notify_all();
      return;
    }
    changed.wait(lock, [&] { return generation != my_generation || !aborted.empty(); });
    if (generation == my_generation) XLTUNE_FAIL(aborted);
  }
};

class ThreadWork final : public CommWork {
 public:
  ThreadWork(std::shared_ptr<Rendezvous> rv, CollectiveWatchdog::Watch watch, int rank, at::Tensor t, int kind,
             at::Tensor out = at::Tensor())
      : rv_(std::move(rv)), watch_(std::move(watch)), rank_(rank), t_(std::move(t)), out_(std::move(out)), kind_(kind) {}
  bool test() override { return done_; }
  void wait() override {
    if (done_) return;
    rv_->exchange(rank_, t_, kind_, 0, out_);
    done_ = true;
    watch_.reset();
  }

 private:
  std::shared_ptr<Rendezvous> rv_;
  CollectiveWatchdog::Watch watch_;  // Note [No hang]: from the start until the exchange
  int rank_;
  at::Tensor t_, out_;
  int kind_;
  bool done_ = false;
};

class ThreadGroupCommunicator final : public Communicator {
 public:
  ThreadGroupCommunicator(std::shared_ptr<Rendezvous> rv, int rank, bool sums_bf16)
      : rv_(std::move(rv)), rank_(rank), sums_bf16_(sums_bf16) {}
  ~ThreadGroupCommunicator() override { stop_watchdog(); }
  int rank() const override { return rank_; }
  int size() const override { return rv_->world; }
  int local_rank() const override { return rank_; }
  int local_size() const override { return rv_->world; }
  std::string name() const override { return "threads"; }
  bool sums_bf16() const override { return sums_bf16_; }
  std::unique_ptr<CommWork> start_all_reduce_sum(const at::Tensor& t) override {
    XLTUNE_CHECK(t.is_contiguous(), "all-reduce: the tensor must be contiguous");
    check_sum_dtype(t);
    return std::make_unique<ThreadWork>(rv_, watch_collective(str("all-reduce of ", t.numel(), " values")), rank_, t, 0);
  }
  std::unique_ptr<CommWork> start_reduce_scatter_sum(const at::Tensor& in, const at::Tensor& out) override {
    XLTUNE_CHECK(in.numel() == out.numel() * rv_->world, "reduce-scatter: ", in.numel(), " in, ", out.numel(), " out");
    check_sum_dtype(in);
    return std::make_unique<ThreadWork>(rv_, watch_collective(str("reduce-scatter of ", in.numel(), " values")), rank_,
                                        in, 3, out);
  }
  std::unique_ptr<CommWork> start_all_gather(const at::Tensor& in, const at::Tensor& out) override {
    XLTUNE_CHECK(out.numel() == in.numel() * rv_->world, "all-gather: ", in.numel(), " in, ", out.numel(), " out");
    return std::make_unique<ThreadWork>(rv_, watch_collective(str("all-gather of ", out.numel(), " values")), rank_,
                                        in, 4, out);
  }
  void broadcast(const at::Tensor& t, int root) override {
    const CollectiveWatchdog::Watch watch = watch_collective(str("broadcast from rank ", root));
    rv_->exchange(rank_, t, 1, root);
  }
  void barrier() override {
    const CollectiveWatchdog::Watch watch = watch_collective("barrier");
    rv_->exchange(rank_, at::Tensor(), 2, 0);
  }
  // Not the process's exit (Communicator's): the test that runs the ranks must live on. Every
  // rank's collectives throw from now on, so none waits forever for the rank that failed.
  [[noreturn]] void abort(int code) override {
    rv_->abort(rank_, code);
    XLTUNE_FAIL("rank ", rank_, " of ", rv_->world, " aborted the job (code ", code, ")");
  }

 protected:
  // The watchdog's thread: as an abort (every rank's collectives throw, here with the
  // watchdog's message), since the process must live on.
  void collective_timed_out(const std::string& message) override { rv_->abort_with(message); }

 private:
  // As MPI refuses bf16 sums, so does a group that does not sum bf16: a test then fails where
  // the real job would, instead of passing on a sum MPI cannot do.
  void check_sum_dtype(const at::Tensor& t) const {
    XLTUNE_CHECK(sums_bf16_ || t.scalar_type() != at::kBFloat16, "threads: this group sums no bf16 tensors ",
                 "(start_all_reduce_sum_bf16 sums an fp32 copy)");
  }
  std::shared_ptr<Rendezvous> rv_;
  int rank_;
  bool sums_bf16_;
};

}  // namespace

std::vector<std::shared_ptr<Communicator>> make_thread_group(int world_size, bool sums_bf16) {
  XLTUNE_CHECK(world_size >= 1, "thread group: expected at least one rank");
  auto rv = std::make_shared<Rendezvous>(world_size);
  std::vector<std::shared_ptr<Communicator>> out;
  for (int r = 0; r < world_size; ++r) out.push_back(std::make_shared<ThreadGroupCommunicator>(rv, r, sums_bf16));
  return out;
}

}  // namespace xltune
