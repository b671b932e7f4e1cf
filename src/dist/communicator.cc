#include "dist/communicator.h"

#include <ATen/ATen.h>

#include <cstdlib>

#include "core/check.h"
#include "core/log.h"

namespace xltune {

namespace {
class DoneWork final : public CommWork {
 public:
  bool test() override { return true; }
  void wait() override {}
};
}  // namespace

void Communicator::abort(int code) { std::_Exit(code); }

void Communicator::set_collective_timeout(double seconds) {
  XLTUNE_CHECK(seconds >= 0, "--collective_timeout ", seconds, ": expected seconds, or 0 for none");
  stop_watchdog();
  watchdog_.reset();
  if (seconds == 0 || size() == 1) return;
  watchdog_ = std::make_shared<CollectiveWatchdog>(
      rank(), seconds, [this](const std::string& message) { collective_timed_out(message); },
      [this] { poll_collectives(); });
}

CollectiveWatchdog::Watch Communicator::watch_collective(std::string what) {
  if (watchdog_ == nullptr) return {};
  return watchdog_->watch(std::move(what));
}

void Communicator::collective_timed_out(const std::string& message) {
  log_error(message);
  abort(1);
}

void Communicator::stop_watchdog() {
  if (watchdog_ != nullptr) watchdog_->stop();
}

std::unique_ptr<CommWork> SingleProcessCommunicator::start_all_reduce_sum(const at::Tensor&) {
  return std::make_unique<DoneWork>();
}

std::unique_ptr<CommWork> SingleProcessCommunicator::start_reduce_scatter_sum(const at::Tensor& input,
                                                                            const at::Tensor& output) {
  at::NoGradGuard no_grad;
  at::Tensor out = output;
  out.copy_(input);
  return std::make_unique<DoneWork>();
}

std::unique_ptr<CommWork> SingleProcessCommunicator::start_all_gather(const at::Tensor& input, const at::Tensor& output) {
  at::NoGradGuard no_grad;
  at::Tensor out = output;
  out.copy_(input);
  return std::make_unique<DoneWork>();
}

void SingleProcessCommunicator::broadcast(const at::Tensor&, int root) {
  XLTUNE_CHECK(root == 0, "broadcast from rank ", root, " in a world of one");
}

std::vector<double> all_reduce_sum_values(Communicator& comm, const std::vector<double>& values,
                                          const at::Device& device) {
  if (comm.size() == 1 || values.empty()) return values;
  at::Tensor t = at::tensor(values, at::kDouble);
  // A device communicator (NCCL) reduces device tensors; fp64 keeps counts and sums exact.
  if (comm.device_type() == c10::DeviceType::CUDA) t = t.to(device);
  comm.all_reduce_sum(t);
  t = t.cpu();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

}  // namespace xltune
