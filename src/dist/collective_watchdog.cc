#include "dist/collective_watchdog.h"

#include <algorithm>
#include <atomic>
#include <sstream>

namespace xltune {

namespace {
std::atomic<int64_t> g_current_step{0};
}  // namespace

void set_current_step(int64_t step) { g_current_step.store(step, std::memory_order_relaxed); }
int64_t current_step() { return g_current_step.load(std::memory_order_relaxed); }

std::string describe_step(int64_t step) {
  return step > 0 ? "at step " + std::to_string(step) : std::string("before the first step");
}

CollectiveWatchdog::CollectiveWatchdog(int rank, double timeout_s, OnTimeout on_timeout, std::function<void()> on_poll,
                                       bool watch_in_background)
    : rank_(rank), timeout_s_(timeout_s), on_timeout_(std::move(on_timeout)), on_poll_(std::move(on_poll)) {
  if (watch_in_background) thread_ = std::thread([this] { run(); });
}

CollectiveWatchdog::~CollectiveWatchdog() { stop(); }

void CollectiveWatchdog::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  stopping_.notify_all();
  if (!thread_.joinable()) return;
  // Its own thread cannot join itself (the last handle released there): it ends on its own.
  if (thread_.get_id() == std::this_thread::get_id()) thread_.detach();
  else thread_.join();
}

CollectiveWatchdog::Watch& CollectiveWatchdog::Watch::operator=(Watch&& other) noexcept {
  if (this != &other) {
    reset();
    owner_ = std::move(other.owner_);
    id_ = other.id_;
    other.id_ = 0;
  }
  return *this;
}

void CollectiveWatchdog::Watch::reset() {
  if (owner_ == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(owner_->mutex_);
    owner_->collectives_.erase(id_);
  }
  owner_.reset();
  id_ = 0;
}

CollectiveWatchdog::Watch CollectiveWatchdog::watch(std::string what, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mutex_);
  const uint64_t id = next_id_++;
  collectives_[id] = Collective{std::move(what), current_step(), now, untimed_scopes_ == 0};
  return Watch(shared_from_this(), id);
}

CollectiveWatchdog::UntimedScope::UntimedScope(std::shared_ptr<CollectiveWatchdog> owner) : owner_(std::move(owner)) {
  if (owner_ == nullptr) return;
  std::lock_guard<std::mutex> lock(owner_->mutex_);
  ++owner_->untimed_scopes_;
}

CollectiveWatchdog::UntimedScope::~UntimedScope() {
  if (owner_ == nullptr) return;
  std::lock_guard<std::mutex> lock(owner_->mutex_);
  --owner_->untimed_scopes_;
}

std::optional<std::string> CollectiveWatchdog::overdue(Clock::time_point now) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto limit = std::chrono::duration<double>(timeout_s_);
  for (const auto& [id, c] : collectives_) {  // ids rise with the start: the oldest first
    if (!c.timed || now - c.started <= limit) continue;
    std::ostringstream m;
    m << "rank " << rank_ << ": " << c.what << " " << describe_step(c.step) << " did not complete in " << timeout_s_
      << " s: another rank died or hangs (--collective_timeout)";
    return m.str();
  }
  return std::nullopt;
}

bool CollectiveWatchdog::check(Clock::time_point now) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (fired_) return false;
  }
  const std::optional<std::string> message = overdue(now);
  if (!message) return false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (fired_) return false;
    fired_ = true;
  }
  // Without the lock: the callback wakes the waiters (threads), whose handles then unregister.
  on_timeout_(*message);
  return true;
}

size_t CollectiveWatchdog::outstanding() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return collectives_.size();
}

void CollectiveWatchdog::run() {
  // A twentieth of the timeout, within [10 ms, 1 s]: a late report by at most 5 %, and an idle
  // thread that wakes once a second at the default.
  const auto poll = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(std::clamp(timeout_s_ / 20, 0.01, 1.0)));
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    stopping_.wait_for(lock, poll, [&] { return stop_; });
    if (stop_) break;
    lock.unlock();
    if (on_poll_) on_poll_();
    const bool fired = check(Clock::now());
    lock.lock();
    if (fired) break;  // one report: the job is ending
  }
}

}  // namespace xltune
