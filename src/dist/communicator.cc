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

// The fp32 detour of a bf16 sum: `wide` (fp32) is summed; once done, rounded into `out` (bf16).
class RoundedBackWork final : public CommWork {
 public:
  RoundedBackWork(std::unique_ptr<CommWork> inner, at::Tensor wide, at::Tensor out)
      : inner_(std::move(inner)), wide_(std::move(wide)), out_(std::move(out)) {}
  bool test() override {
    if (!done_ && inner_->test()) round_back();
    return done_;
  }
  void wait() override {
    if (done_) return;
    inner_->wait();
    round_back();
  }

 private:
  void round_back() {
    at::NoGradGuard no_grad;
    out_.copy_(wide_);
    wide_ = at::Tensor();  // the fp32 copy is freed as soon as the result is in
    done_ = true;
  }
  std::unique_ptr<CommWork> inner_;
  at::Tensor wide_, out_;
  bool done_ = false;
};

void check_bf16(const at::Tensor& t, const char* what) {
  XLTUNE_CHECK(t.scalar_type() == at::kBFloat16 && t.is_contiguous(), what, ": expected a contiguous bf16 tensor, got ",
               t.scalar_type());
}
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

std::unique_ptr<CommWork> start_all_reduce_sum_bf16(Communicator& comm, const at::Tensor& tensor) {
  check_bf16(tensor, "bf16 all-reduce");
  if (comm.sums_bf16()) return comm.start_all_reduce_sum(tensor);
  at::NoGradGuard no_grad;
  at::Tensor wide = tensor.to(at::kFloat);
  std::unique_ptr<CommWork> inner = comm.start_all_reduce_sum(wide);
  return std::make_unique<RoundedBackWork>(std::move(inner), wide, tensor);
}

std::unique_ptr<CommWork> start_reduce_scatter_sum_bf16(Communicator& comm, const at::Tensor& input,
                                                        const at::Tensor& output) {
  check_bf16(input, "bf16 reduce-scatter");
  check_bf16(output, "bf16 reduce-scatter");
  if (comm.sums_bf16()) return comm.start_reduce_scatter_sum(input, output);
  XLTUNE_CHECK(input.numel() == output.numel() * comm.size(), "bf16 reduce-scatter: ", input.numel(), " values in, ",
               output.numel(), " out, for ", comm.size(), " ranks");
  at::NoGradGuard no_grad;
  at::Tensor wide = input.to(at::kFloat);
  at::Tensor mine = wide.narrow(0, comm.rank() * output.numel(), output.numel());  // in place
  std::unique_ptr<CommWork> inner = comm.start_reduce_scatter_sum(wide, mine);
  return std::make_unique<RoundedBackWork>(std::move(inner), mine, output);
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
