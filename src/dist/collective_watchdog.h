// Note [No hang]: a collective that does not complete within --collective_timeout ends the job.
//
// A rank that dies, is killed or freezes leaves the others waiting in their next collective; a
// launcher notices a rank that exits (mpirun, srun --kill-on-bad-exit), but not one that is
// stopped, swapped out or stuck in a driver, and NCCL waits on the GPU where no MPI error can
// reach it. So every collective a communicator starts is registered here, with the step the
// job is at, from its start until it completes (as c10d's watchdog does), and a background
// thread looks at the oldest every poll: one outstanding longer than the timeout is reported in
// ONE line,
//   "rank R: all-reduce of N values at step S did not complete in T s: another rank died or
//    hangs (--collective_timeout)"
// and handed to the communicator's callback, which ends the job (MPI: MPI_Abort; NCCL:
// ncclCommAbort, then the host's abort; threads: the thread group's abort, which fails every
// rank's collectives). The exit is non-zero and nothing is written on the way out, so the last
// complete checkpoint is the one a resume takes (Note [Checkpoints]).
//
// The timeout is PyTorch's process-group default, 600 s, and 0 turns it off. It covers every
// collective of a training run except one: the barrier where the other ranks wait while rank 0
// preprocesses the images, whose length is the preprocessing's and has no bound worth guessing
// (a rank that dies there is still ended by the launcher). That wait is made inside an
// UntimedScope. Set-up's other collectives (resume planning, the latents, the NCCL id) and the
// loop's (steps, checkpoints, validation, the outputs) are timed: their ranks do the same work,
// or rank 0 writes files for a bounded time.
//
// This file uses the standard library alone (the dist part's interfaces build core-only).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace xltune {

// The step the job is at, for the messages of the layers below it: set by the training loop at
// each step (0 before the first). Process-wide, as the ranks of one process (a test's threads)
// step together.
void set_current_step(int64_t step);
int64_t current_step();
// "at step S", or "before the first step" when S is 0.
std::string describe_step(int64_t step);

// Made with std::make_shared: the handles of the collectives it watches share it.
class CollectiveWatchdog : public std::enable_shared_from_this<CollectiveWatchdog> {
 public:
  using Clock = std::chrono::steady_clock;
  using OnTimeout = std::function<void(const std::string& message)>;

  // `timeout_s` > 0. The thread starts with `watch_in_background` (tests of the clock alone
  // leave it off and call check() with their own time points); it calls `on_poll` (when given)
  // before every look, outside its lock (NCCL releases the collectives its events show done).
  CollectiveWatchdog(int rank, double timeout_s, OnTimeout on_timeout, std::function<void()> on_poll = nullptr,
                     bool watch_in_background = true);
  ~CollectiveWatchdog();
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  // One collective from its start until the handle is reset or destroyed (it completed, or its
  // waiter failed).
  class Watch {
   public:
    Watch() = default;
    Watch(Watch&& other) noexcept { *this = std::move(other); }
    Watch& operator=(Watch&& other) noexcept;
    ~Watch() { reset(); }
    void reset();
    explicit operator bool() const { return owner_ != nullptr; }  // false: nothing is watched

   private:
    friend class CollectiveWatchdog;
    Watch(std::shared_ptr<CollectiveWatchdog> owner, uint64_t id) : owner_(std::move(owner)), id_(id) {}
    std::shared_ptr<CollectiveWatchdog> owner_;
    uint64_t id_ = 0;
  };
  // `what` names the collective ("all-reduce of 1024 values"); `now` is its start.
  Watch watch(std::string what, Clock::time_point now = Clock::now());

  // While one lives on this watchdog, the collectives it starts have no deadline.
  class UntimedScope {
   public:
    explicit UntimedScope(std::shared_ptr<CollectiveWatchdog> owner);  // null: nothing to do
    ~UntimedScope();
    UntimedScope(const UntimedScope&) = delete;
    UntimedScope& operator=(const UntimedScope&) = delete;

   private:
    std::shared_ptr<CollectiveWatchdog> owner_;
  };

  // The message of the oldest timed collective outstanding longer than the timeout at `now`;
  // nullopt when none is.
  std::optional<std::string> overdue(Clock::time_point now) const;
  // overdue(now) and, the first time it finds one, the callback; true when it fired.
  bool check(Clock::time_point now);
  // Ends the thread (the communicator's destructor calls it before its members go).
  void stop();
  size_t outstanding() const;

 private:
  struct Collective {
    std::string what;
    int64_t step = 0;
    Clock::time_point started;
    bool timed = true;
  };
  void run();
  const int rank_;
  const double timeout_s_;
  const OnTimeout on_timeout_;
  const std::function<void()> on_poll_;
  mutable std::mutex mutex_;
  std::condition_variable stopping_;
  std::map<uint64_t, Collective> collectives_;  // by id: the oldest first
  uint64_t next_id_ = 1;
  int untimed_scopes_ = 0;
  bool stop_ = false;
  bool fired_ = false;
  std::thread thread_;
};

}  // namespace xltune
