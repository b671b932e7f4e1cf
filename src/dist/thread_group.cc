#include "dist/thread_group.h"

#include <ATen/ATen.h>

#include <condition_variable>
#include <mutex>

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

  // kind 0: sum, 1: broadcast from `root`, 2: barrier.
  void exchange(int rank, const at::Tensor& t, int kind, int root) {
    std::unique_lock<std::mutex> lock(mutex);
    const uint64_t my_generation = generation;
    slots[static_cast<size_t>(rank)] = t;
    if (++arrived == world) {
      if (kind == 0) {
        result = slots[0].clone();
        for (int r = 1; r < world; ++r) result.add_(slots[static_cast<size_t>(r)]);
      } else if (kind == 1) {
        result = slots[static_cast<size_t>(root)].clone();
      }
      for (int r = 0; r < world; ++r) {
        at::Tensor s = slots[static_cast<size_t>(r)];
        if (kind != 2) s.copy_(result);
        slots[static_cast<size_t>(r)] = at::Tensor();
      }
      arrived = 0;
      ++generation;
      changed.notify_all();
      return;
    }
    changed.wait(lock, [&] { return generation != my_generation; });
  }
};

class ThreadWork final : public CommWork {
 public:
  ThreadWork(std::shared_ptr<Rendezvous> rv, int rank, at::Tensor t) : rv_(std::move(rv)), rank_(rank), t_(std::move(t)) {}
  bool test() override { return done_; }
  void wait() override {
    if (done_) return;
    rv_->exchange(rank_, t_, 0, 0);
    done_ = true;
  }

 private:
  std::shared_ptr<Rendezvous> rv_;
  int rank_;
  at::Tensor t_;
  bool done_ = false;
};

class ThreadGroupCommunicator final : public Communicator {
 public:
  ThreadGroupCommunicator(std::shared_ptr<Rendezvous> rv, int rank) : rv_(std::move(rv)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return rv_->world; }
  int local_rank() const override { return rank_; }
  int local_size() const override { return rv_->world; }
  std::string name() const override { return "threads"; }
  std::unique_ptr<CommWork> start_all_reduce_sum(const at::Tensor& t) override {
    XLTUNE_CHECK(t.is_contiguous(), "all-reduce: the tensor must be contiguous");
    return std::make_unique<ThreadWork>(rv_, rank_, t);
  }
  void broadcast(const at::Tensor& t, int root) override { rv_->exchange(rank_, t, 1, root); }
  void barrier() override { rv_->exchange(rank_, at::Tensor(), 2, 0); }

 private:
  std::shared_ptr<Rendezvous> rv_;
  int rank_;
};

}  // namespace

std::vector<std::shared_ptr<Communicator>> make_thread_group(int world_size) {
  XLTUNE_CHECK(world_size >= 1, "thread group: expected at least one rank");
  auto rv = std::make_shared<Rendezvous>(world_size);
  std::vector<std::shared_ptr<Communicator>> out;
  for (int r = 0; r < world_size; ++r) out.push_back(std::make_shared<ThreadGroupCommunicator>(rv, r));
  return out;
}

}  // namespace xltune
