// The whole training job in one process, on the communicator that runs ranks as threads: two
// ranks with half the batch each train exactly what one rank trains (Note [The job's shape]),
// without mpirun, so the job's phases are testable where a debugger and a sanitizer can see them.
// Stops and faults come from fake RunHooks (job/run_hooks.h), as tests/cli/checkpoint_test.sh's
// come from signals and XLTUNE_FAULT_* variables.
#include "job/train_job.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <thread>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/data_files.h"
#include "core/safetensors.h"
#include "data/image_codec.h"
#include "dist/communicator.h"
#include "dist/thread_group.h"
#include "job/checkpoint.h"
#include "job/run_hooks.h"
#include "sdxl/random_model.h"
#include "test_util.h"
#include "text/clip_tokenizer.h"

namespace xltune {
namespace {

namespace fs = std::filesystem;
using testing_util::ScopedTempDir;

// A tiny random SDXL-shaped model with the real CLIP tokenizers, as `xltune init-model`.
void make_tiny_model(const std::string& dir) {
  const std::string vocab = clip_vocabulary_file();
  ClipTokenizer::from_bpe_file(vocab, "<|endoftext|>").write_folder(dir + "/tokenizer");
  ClipTokenizer::from_bpe_file(vocab, "!").write_folder(dir + "/tokenizer_2");
  write_random_model(dir, preset_configs("tiny"), 0);
}

// Six smooth random 96x72 photos in a folder.
void make_photos(const std::string& dir) {
  fs::create_directories(dir);
  at::Generator g = at::detail::createCPUGenerator(5);
  for (int i = 0; i < 6; ++i) {
    at::Tensor small = at::randint(0, 256, {1, 3, 6, 8}, g, at::TensorOptions().dtype(at::kFloat));
    at::Tensor big = at::upsample_bilinear2d(small, {72, 96}, false).round().clamp(0, 255).to(at::kByte);
    at::Tensor hwc = big[0].permute({1, 2, 0}).contiguous();
    cv::Mat rgb(72, 96, CV_8UC3, hwc.data_ptr());
    write_file_atomic(dir + "/photo-" + std::to_string(i) + ".png", encode_png(rgb, ChannelOrder::kRgb));
  }
}

TrainOptions tiny_run(const ScopedTempDir& dir, int64_t batch, const std::string& out) {
  TrainOptions o;
  o.model = dir / "model";
  o.input_images = dir / "photos";
  o.output_dir = dir / out;
  o.prep.resolution = 64;
  o.train_batch_size = batch;
  o.max_train_steps = 4;
  o.checkpointing_steps = 2;
  o.seed = 11;
  o.lora_rank = 4;
  o.lora_lr = 1e-3;
  o.ti_lr = 1e-3;
  o.verbose = false;
  return o;
}

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
RankResults run_on_thread_ranks(const TrainOptions& o, std::vector<FakeHooks> hooks) {
  const int world = static_cast<int>(hooks.size());
  const std::vector<std::shared_ptr<Communicator>> ranks = make_thread_group(world);
  RankResults out{std::vector<TrainJobReport>(world), std::vector<std::string>(world)};
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        out.reports[r] = run_train_job(o, nlohmann::ordered_json::object(), *ranks[r], hooks[r]);
      } catch (const std::exception& e) {
        out.errors[r] = e.what();
        try {
          ranks[r]->abort(1);
        } catch (const std::exception&) {  // the thread group's abort throws once it has woken the others
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

const std::vector<std::string> kNoErrors = {"", ""};

std::map<std::string, at::Tensor> tensors_of(const std::string& path) {
  std::map<std::string, at::Tensor> out;
  for (auto& [name, t] : load_safetensors(path)) out[name] = t;
  return out;
}

TEST(TrainJob, TwoRanksAsThreadsTrainWhatOneRankTrains) {
  ScopedTempDir dir;
  make_tiny_model(dir / "model");
  make_photos(dir / "photos");
  SingleProcessCommunicator single;
  FakeHooks none;
  const TrainJobReport one = run_train_job(tiny_run(dir, 4, "one"), nlohmann::ordered_json::object(), single, none);
  ASSERT_EQ(one.steps, 4);

  const RankResults two = run_on_thread_ranks(tiny_run(dir, 2, "two"), {FakeHooks{}, FakeHooks{}});
  ASSERT_EQ(two.errors, kNoErrors);
  const std::vector<TrainJobReport>& reports = two.reports;
  EXPECT_EQ(reports[0].steps, 4);
  EXPECT_EQ(reports[1].steps, 4);
  // The same global batches in the same global positions; only the order of the gradient sums
  // differs (over ranks, then over each rank's samples). Measured on ATen's native, avx2 and
  // default kernels: final loss 4.4e-8, 4.4e-8, 0 relative; worst tensor 1.4e-4, 5.6e-5, 1.0e-4
  // of its largest value, a LoRA up weight (zero at the start, so four AdamW steps leave it small
  // and its normalised updates carry the rounding further than compare_runs.py's 8-step runs).
  EXPECT_EQ(reports[0].final_loss, reports[1].final_loss);  // every rank reports the global loss
  EXPECT_MEASURED_BELOW("one rank against two thread ranks: final loss (relative)",
                        std::abs(reports[0].final_loss - one.final_loss) / std::abs(one.final_loss), 2e-7);
  const std::map<std::string, at::Tensor> a = tensors_of(dir / "one/trainer_state.safetensors");
  std::map<std::string, at::Tensor> b = tensors_of(dir / "two/trainer_state.safetensors");
  ASSERT_EQ(a.size(), b.size());
  double worst = 0;
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    const double largest = std::max(t.abs().max().item<double>(), 1e-30);
    const double d = (t.to(at::kDouble) - b[name].to(at::kDouble)).abs().max().item<double>() / largest;
    worst = std::max(worst, d);
  }
  EXPECT_MEASURED_BELOW("one rank against two thread ranks: trainer state (of each tensor's largest)", worst, 5e-4);
  EXPECT_TRUE(fs::exists(dir / "two/trained_model.tar"));
  EXPECT_TRUE(fs::exists(dir / "two/latents/latents-r00001.h5"));  // rank 1 encoded its own slice
}

// Full fine-tuning on two thread ranks shards the UNet's AdamW state (ZeRO-1, Note [One optimizer
// interface]): each rank writes its shard beside the checkpoint, and the weights equal one
// unsharded rank's up to the order of the sums (measured 5.4e-5 of a tensor's largest value).
TEST(TrainJob, FullFineTuningShardedOverTwoRanksTrainsWhatOneRankTrains) {
  ScopedTempDir dir;
  make_tiny_model(dir / "model");
  make_photos(dir / "photos");
  auto full = [&](int64_t batch, const std::string& out) {
    TrainOptions o = tiny_run(dir, batch, out);
    o.is_lora = false;
    o.unet_learning_rate = 1e-4;
    return o;
  };
  SingleProcessCommunicator single;
  ASSERT_EQ(run_train_job(full(4, "one"), nlohmann::ordered_json::object(), single).steps, 4);
  const RankResults two = run_on_thread_ranks(full(2, "two"), {FakeHooks{}, FakeHooks{}});
  ASSERT_EQ(two.errors, kNoErrors);
  const nlohmann::json config = nlohmann::json::parse(read_file(dir / "two/run_config.json"));
  EXPECT_TRUE(config["optimizer"]["zero_1"].get<bool>());
  EXPECT_TRUE(fs::exists(dir / "two/checkpoints/step-00000004/optimizer-r00000.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "two/checkpoints/step-00000004/optimizer-r00001.safetensors"));
  const std::map<std::string, at::Tensor> a = tensors_of(dir / "one/trainer_state.safetensors");
  const std::map<std::string, at::Tensor> b = tensors_of(dir / "two/trainer_state.safetensors");
  ASSERT_EQ(a.size(), b.size());
  double worst = 0;
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    const double largest = std::max(t.abs().max().item<double>(), 1e-30);
    worst = std::max(worst, (t.to(at::kDouble) - b.at(name).to(at::kDouble)).abs().max().item<double>() / largest);
  }
  EXPECT_MEASURED_BELOW("full fine-tuning, one rank against two ZeRO-1 thread ranks (of each tensor's largest)", worst,
                        3e-4);
}

// A stop signal that reaches rank 1 alone, in step 3 of 4: the ranks agree on it in the step's
// all-reduce, write the checkpoint of step 3 together and both report the stop (which `xltune
// train` turns into exit kExitRequeue). The next run resumes from that checkpoint and ends with
// the weights of a run never stopped, bit for bit: the same ranks sum in the same order.
// A stop before the first step (start-up included, where `xltune train` now has its handlers):
// one rank's signal, agreed at a phase boundary, stops every rank with nothing written but the
// shards, and the next run trains from the start.
TEST(TrainJob, StopSignalBeforeTheFirstStepStopsEveryRankWithNothingToCheckpoint) {
  ScopedTempDir dir;
  make_tiny_model(dir / "model");
  make_photos(dir / "photos");
  FakeHooks signalled;
  signalled.stop_from_ask = 2;  // the first boundary passes; the second (after the shards) stops
  const RankResults stopped = run_on_thread_ranks(tiny_run(dir, 2, "early"), {FakeHooks{}, signalled});
  ASSERT_EQ(stopped.errors, kNoErrors);
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(stopped.reports[r].stopped) << "rank " << r;
    EXPECT_EQ(stopped.reports[r].steps, 0) << "rank " << r;
  }
  EXPECT_TRUE(fs::exists(dir / "early/shards/index.json")) << "stopped after the shards were made";
  EXPECT_FALSE(fs::exists(dir / "early/checkpoints/latest"));
  EXPECT_FALSE(fs::exists(dir / "early/metrics.jsonl"));
  EXPECT_FALSE(fs::exists(dir / "early/trained_model.tar"));

  const RankResults again = run_on_thread_ranks(tiny_run(dir, 2, "early"), {FakeHooks{}, FakeHooks{}});
  ASSERT_EQ(again.errors, kNoErrors);
  EXPECT_FALSE(again.reports[0].stopped);
  EXPECT_EQ(again.reports[0].steps, 4);
  EXPECT_TRUE(fs::exists(dir / "early/trained_model.tar"));
}

TEST(TrainJob, StopSignalCheckpointsTheStepAndTheResumeIsExact) {
  ScopedTempDir dir;
  make_tiny_model(dir / "model");
  make_photos(dir / "photos");
  const RankResults whole = run_on_thread_ranks(tiny_run(dir, 2, "whole"), {FakeHooks{}, FakeHooks{}});
  ASSERT_EQ(whole.errors, kNoErrors);

  FakeHooks signalled;
  signalled.stop_from = 3;
  const RankResults stopped = run_on_thread_ranks(tiny_run(dir, 2, "stopped"), {FakeHooks{}, signalled});
  ASSERT_EQ(stopped.errors, kNoErrors);
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(stopped.reports[r].stopped) << "rank " << r;
    EXPECT_EQ(stopped.reports[r].steps, 3) << "rank " << r;
  }
  const std::optional<CheckpointInfo> latest = find_checkpoint(dir / "stopped/checkpoints");
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->step, 3) << "the checkpoint of the step the signal landed in (not due by --checkpointing_steps 2)";
  EXPECT_FALSE(fs::exists(dir / "stopped/trained_model.tar"));

  const RankResults resumed = run_on_thread_ranks(tiny_run(dir, 2, "stopped"), {FakeHooks{}, FakeHooks{}});
  ASSERT_EQ(resumed.errors, kNoErrors);
  EXPECT_FALSE(resumed.reports[0].stopped);
  EXPECT_EQ(resumed.reports[0].steps, 4);
  EXPECT_EQ(resumed.reports[0].final_loss, whole.reports[0].final_loss);
  ASSERT_TRUE(fs::exists(dir / "stopped/trained_model.tar"));
  const std::map<std::string, at::Tensor> a = tensors_of(dir / "whole/trainer_state.safetensors");
  const std::map<std::string, at::Tensor> b = tensors_of(dir / "stopped/trainer_state.safetensors");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_TRUE(at::equal(t, b.at(name))) << name << ": stopped and resumed differs from the run never stopped";
  }
}

// A full disk while writing the checkpoint of step 4 (the last): the run fails saying which
// checkpoint was not written, and the one of step 2 stays whole, with nothing half-written.
TEST(TrainJob, FailedCheckpointWriteNamesTheStepAndKeepsThePreviousOne) {
  ScopedTempDir dir;
  make_tiny_model(dir / "model");
  make_photos(dir / "photos");
  FakeHooks full_disk;
  full_disk.write_fail_step = 4;
  full_disk.write_fail_bytes = 100;  // inside trainer.safetensors' header
  SingleProcessCommunicator single;
  std::string message;
  try {
    run_train_job(tiny_run(dir, 4, "full"), nlohmann::ordered_json::object(), single, full_disk);
  } catch (const std::exception& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("checkpoint at step 4 not written"), std::string::npos) << message;
  EXPECT_NE(message.find("No space left on device"), std::string::npos) << message;
  EXPECT_NE(message.find("the previous checkpoint is intact"), std::string::npos) << message;
  const std::optional<CheckpointInfo> latest = find_checkpoint(dir / "full/checkpoints");
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->step, 2);
  nlohmann::json manifest;
  EXPECT_EQ(verify_checkpoint(latest->dir, &manifest), "");
  EXPECT_FALSE(fs::exists(dir / "full/checkpoints/" + checkpoint_name(4) + "/manifest.json"));
  for (const auto& entry : fs::recursive_directory_iterator(dir / "full/checkpoints"))
    EXPECT_EQ(entry.path().filename().string().find(".tmp."), std::string::npos) << entry.path();
  EXPECT_FALSE(fs::exists(dir / "full/trained_model.tar"));
}

// Rank 1 fails in step 3: its error ends rank 0 too (here through the thread group's abort, under
// mpirun through MPI_Abort), and the checkpoint of step 2 is what a next run would resume from.
TEST(TrainJob, FailingRankTakesTheJobDown) {
  ScopedTempDir dir;
  make_tiny_model(dir / "model");
  make_photos(dir / "photos");
  FakeHooks failing;
  failing.fail_at = 3;
  const RankResults r = run_on_thread_ranks(tiny_run(dir, 2, "failed"), {FakeHooks{}, failing});
  EXPECT_NE(r.errors[1].find("fake fault: rank 1 fails at step 3"), std::string::npos) << r.errors[1];
  EXPECT_NE(r.errors[0].find("rank 1 of 2 aborted the job"), std::string::npos) << r.errors[0];
  const std::optional<CheckpointInfo> latest = find_checkpoint(dir / "failed/checkpoints");
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->step, 2);
  EXPECT_FALSE(fs::exists(dir / "failed/trained_model.tar"));
}

}  // namespace
}  // namespace xltune
