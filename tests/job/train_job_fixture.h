// The in-process job tests' fixtures (train_job_test.cc, train_features_test.cc): a tiny random
// model, photos, and the job on ranks that are threads, each with fake RunHooks.
#pragma once

#include <ATen/core/Tensor.h>
#include <signal.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "job/run_hooks.h"
#include "job/train_job.h"
#include "job/train_options.h"
#include "test_util.h"

namespace xltune::job_test {

using testing_util::ScopedTempDir;

// A tiny random SDXL-shaped model with the real CLIP tokenizers, as `xltune init-model`.
void make_tiny_model(const std::string& dir);
// Six (or `count`) smooth random 96x72 photos in a folder.
void make_photos(const std::string& dir, int count = 6);
// LoRA on the tiny model and photos at 64 px: 4 steps of `batch` per rank, checkpoints every 2.
TrainOptions tiny_run(const ScopedTempDir& dir, int64_t batch, const std::string& out);

// One rank's stops and faults, set by the test: a stop signal from a step on, a failing step, a
// checkpoint whose writes fail. Each rank holds its own, as each process holds its own
// ProcessRunHooks; 0 means never (steps count from 1).
class FakeHooks final : public RunHooks {
 public:
  int64_t stop_from = 0;         // SIGTERM from this step on
  int stop_from_ask = 0;         // SIGTERM from this question on (set-up's phase boundaries ask first)
  int64_t fail_at = 0;           // before_step throws here
  int64_t write_fail_step = 0;   // the checkpoint of this step ...
  int64_t write_fail_bytes = 0;  // ... fails after these bytes of this rank's writes
  int64_t nan_from = 0, nan_to = 0;  // this rank's samples are NaN in steps nan_from .. nan_to

  int stop_signal() override {
    ++asks_;
    if (stop_from_ask > 0 && asks_ >= stop_from_ask) return SIGTERM;
    return stop_from > 0 && step_ >= stop_from ? SIGTERM : 0;
  }
  void before_step(int rank, int64_t step) override {
    step_ = step;
    if (step == fail_at) XLTUNE_FAIL("fake fault: rank ", rank, " fails at step ", step);
  }
  std::optional<int64_t> checkpoint_write_budget(int /*rank*/, int64_t step) override {
    if (write_fail_step > 0 && step == write_fail_step) return write_fail_bytes;
    return std::nullopt;
  }
  void inside_checkpoint(int64_t /*step*/) override {}  // the SIGKILL case: tests/cli/checkpoint_test.sh
  bool poison_batch(int /*rank*/, int64_t step) override { return nan_from > 0 && step >= nan_from && step <= nan_to; }

 private:
  int64_t step_ = 0;  // the step this rank is in (for stop_signal)
  int asks_ = 0;      // stop_signal() calls so far
};

struct RankResults {
  std::vector<TrainJobReport> reports;
  std::vector<std::string> errors;  // "" for a rank that returned
};
// The job on hooks.size() ranks as threads, each with its hooks. A rank that throws aborts the
// group, as `xltune train` does (abort_job), so that the others end with an error instead of
// waiting for it forever.
RankResults run_on_thread_ranks(const TrainOptions& o, std::vector<FakeHooks> hooks);

inline const std::vector<std::string> kNoErrors = {"", ""};

std::map<std::string, at::Tensor> tensors_of(const std::string& path);
// The largest difference between two runs' tensors of the same names (those starting with
// `prefix`), each of its largest value.
double worst_relative(const std::map<std::string, at::Tensor>& a, const std::map<std::string, at::Tensor>& b,
                      const std::string& prefix = "");
// metrics.jsonl by step.
std::map<int64_t, nlohmann::json> metrics_of(const std::string& path);

}  // namespace xltune::job_test
