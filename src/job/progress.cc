#include "job/progress.h"

#include <unistd.h>

#include <cstdio>

#include "core/log.h"

namespace xltune {

TrainProgress::TrainProgress(int64_t total, int64_t every, bool enabled)
    : total_(total), every_(every), enabled_(enabled), terminal_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {}

TrainProgress::~TrainProgress() { finish(); }

double TrainProgress::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string TrainProgress::duration_text(double s) {
  const long total = s < 0 ? 0 : static_cast<long>(s + 0.5);
  char buf[32];
  if (total >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", total / 3600, (total / 60) % 60, total % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", total / 60, total % 60);
  return buf;
}

void TrainProgress::update(int64_t step, double loss, double lr, std::optional<double> validation_loss) {
  if (!enabled_) return;
  if (validation_loss) validation_loss_ = validation_loss;
  const auto now = std::chrono::steady_clock::now();
  ++count_;
  // An exponential moving average that starts as a plain mean (no bias toward 0).
  const double k = std::max(1.0 / count_, 0.05);
  avg_ = count_ == 1 ? loss : avg_ + k * (loss - avg_);
  // The first step includes warm-up (allocations, caches): rates are measured after it.
  if (count_ == 1) first_step_done_ = now;
  const double since_first = std::chrono::duration<double>(now - first_step_done_).count();
  const double rate = count_ > 1 && since_first > 0 ? (count_ - 1) / since_first : 0;
  char speed[32];
  if (rate <= 0) std::snprintf(speed, sizeof speed, "-- it/s");
  else if (rate >= 1) std::snprintf(speed, sizeof speed, "%.2f it/s", rate);
  else std::snprintf(speed, sizeof speed, "%.2f s/it", 1 / rate);
  const std::string eta = rate > 0 ? duration_text((total_ - step) / rate) : "--";
  char val[32] = "";
  if (validation_loss_) std::snprintf(val, sizeof val, "  val %.4f", *validation_loss_);
  char line[256];
  std::snprintf(line, sizeof line, "step %lld/%lld  loss %.4f (avg %.4f)%s  lr %.2e  %s  ETA %s",
                static_cast<long long>(step), static_cast<long long>(total_), loss, avg_, val, lr, speed, eta.c_str());
  if (terminal_) {
    std::fprintf(stderr, "\r%s\033[K", line);
    std::fflush(stderr);
    line_open_ = true;
    if (step == total_) finish();
  } else if (step == 1 || step == total_ || step % every_ == 0 || validation_loss) {
    log_info(line);
  }
}

void TrainProgress::finish() {
  if (line_open_) {
    std::fputc('\n', stderr);
    std::fflush(stderr);
    line_open_ = false;
  }
}

}  // namespace xltune
