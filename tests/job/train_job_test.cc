// The whole training job in one process, on the communicator that runs ranks as threads: two
// ranks with half the batch each train exactly what one rank trains (Note [The job's shape]),
// without mpirun, so the job's phases are testable where a debugger and a sanitizer can see them.
// Stops and faults come from fake RunHooks (job/run_hooks.h), as tests/cli/checkpoint_test.sh's
// come from signals and XLTUNE_FAULT_* variables.
#include "job/train_job.h"
#include "job/train_job_fixture.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

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
#include "train/export.h"

namespace xltune {
namespace {

namespace fs = std::filesystem;
using namespace job_test;

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
// The largest difference between two runs' tensors, of each tensor's largest value; both runs
// must hold the same tensors.
double largest_relative_difference(const std::map<std::string, at::Tensor>& a,
                                   const std::map<std::string, at::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (const auto& [name, t] : a) {
    auto it = b.find(name);
    if (it == b.end()) {
      ADD_FAILURE() << name << " is in one run's state only";
      continue;
    }
    const double largest = std::max(t.abs().max().item<double>(), 1e-30);
    worst = std::max(worst, (t.to(at::kDouble) - it->second.to(at::kDouble)).abs().max().item<double>() / largest);
  }
  return worst;
}

TEST(TrainJob, FullFineTuningShardedOverTwoRanksTrainsWhatOneRankTrains) {
  ScopedTempDir dir;
  make_tiny_model(dir / "model");
  make_photos(dir / "photos");
  auto full = [&](int64_t batch, const std::string& out) {
    TrainOptions o = tiny_run(dir, batch, out);
    o.is_lora = false;
    o.unet_learning_rate = 1e-4;
    o.zero_replicated_fraction = 0.0;  // every tensor sharded (the default replicates the stem)
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
  EXPECT_MEASURED_BELOW("full fine-tuning, one rank against two ZeRO-1 thread ranks (of each tensor's largest)",
                        largest_relative_difference(tensors_of(dir / "one/trainer_state.safetensors"),
                                                    tensors_of(dir / "two/trainer_state.safetensors")),
                        3e-4);
}

// Note [Replicated stem under ZeRO-1]: with the default fraction the first 30 % of the UNet's
// parameters (in forward order) are replicated and the rest sharded; that trains what one rank
// trains. A run then
// moves between fractions on resume: stopped at step 3 with everything sharded (0), resumed with
// nothing sharded (1), it ends where the run at the default fraction ends. Only the grouping of
// the gradient norm's sums differs between the three setups.
TEST(TrainJob, ZeroWithAReplicatedStemTrainsWhatOneRankTrainsAndResumesUnderAnyFraction) {
  ScopedTempDir dir;
  make_tiny_model(dir / "model");
  make_photos(dir / "photos");
  auto full = [&](int64_t batch, const std::string& out, std::optional<double> fraction) {
    TrainOptions o = tiny_run(dir, batch, out);
    o.is_lora = false;
    o.unet_learning_rate = 1e-4;
    o.zero_replicated_fraction = fraction;
    return o;
  };
  SingleProcessCommunicator single;
  ASSERT_EQ(run_train_job(full(4, "one", std::nullopt), nlohmann::ordered_json::object(), single).steps, 4);
  const RankResults stem = run_on_thread_ranks(full(2, "stem", std::nullopt), {FakeHooks{}, FakeHooks{}});
  ASSERT_EQ(stem.errors, kNoErrors);
  // Note [Reading a step one step late], with ZeRO-1's counts in flight: steps 1 and 3 on each rank.
  EXPECT_EQ(stem.reports[0].steps_read_late, 2);
  EXPECT_EQ(stem.reports[1].steps_read_late, 2);
  const nlohmann::json config = nlohmann::json::parse(read_file(dir / "stem/run_config.json"));
  EXPECT_TRUE(config["optimizer"]["zero_1"].get<bool>());
  std::map<std::string, double> parameters;  // "unet (ZeRO-1: ...)" as "unet"
  for (const auto& g : config["optimizer"]["groups"])
    parameters[g["name"].get<std::string>().substr(0, g["name"].get<std::string>().find(" ("))] = g["parameters"];
  ASSERT_TRUE(parameters.count("unet") && parameters.count("unet_replicated")) << config["optimizer"].dump();
  const double replicated = parameters["unet_replicated"] / (parameters["unet"] + parameters["unet_replicated"]);
  EXPECT_GE(replicated, TrainOptions::kDefaultZeroReplicatedFraction) << "the tensor that crosses it is replicated";
  EXPECT_LT(replicated, 0.6) << "the split is by parameters, not by tensors";
  EXPECT_TRUE(fs::exists(dir / "stem/checkpoints/step-00000004/optimizer-r00001.safetensors"));
  const std::map<std::string, at::Tensor> one = tensors_of(dir / "one/trainer_state.safetensors");
  const std::map<std::string, at::Tensor> two = tensors_of(dir / "stem/trainer_state.safetensors");
  EXPECT_MEASURED_BELOW("full fine-tuning, one rank against two thread ranks with the stem replicated",
                        largest_relative_difference(one, two), 3e-4);

  FakeHooks signalled;
  signalled.stop_from = 3;
  const RankResults stopped = run_on_thread_ranks(full(2, "moved", 0.0), {FakeHooks{}, signalled});
  ASSERT_EQ(stopped.errors, kNoErrors);
  EXPECT_EQ(stopped.reports[0].steps, 3);
  EXPECT_EQ(stopped.reports[0].steps_read_late, 1) << "the stop, on rank 1 alone, agreed before step 4 was issued";
  EXPECT_TRUE(fs::exists(dir / "moved/checkpoints/step-00000003/optimizer-r00001.safetensors"));
  const RankResults resumed = run_on_thread_ranks(full(2, "moved", 1.0), {FakeHooks{}, FakeHooks{}});
  ASSERT_EQ(resumed.errors, kNoErrors);
  EXPECT_EQ(resumed.reports[0].steps, 4);
  EXPECT_FALSE(nlohmann::json::parse(read_file(dir / "moved/run_config.json"))["optimizer"]["zero_1"].get<bool>())
      << "a fraction of 1 leaves nothing to shard";
  EXPECT_FALSE(fs::exists(dir / "moved/checkpoints/step-00000004/optimizer-r00001.safetensors"));
  const std::map<std::string, at::Tensor> moved = tensors_of(dir / "moved/trainer_state.safetensors");
  EXPECT_MEASURED_BELOW("all sharded to step 3, none after, against the default stem throughout",
                        largest_relative_difference(two, moved), 3e-6);  // measured 6.7e-7
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

// Note [Deterministic mode] on the CPU, where the kernels are deterministic anyway: the mode is
// applied (libtorch's flag on during the run), recorded in run_config.json and in each
// checkpoint's manifest, and two runs, and a stopped run and its resume, end with identical bits
// under it. (No op of a CPU run lacks a deterministic kernel, so none throws here.) The flag is
// the process's: put back afterwards for the tests that follow.
TEST(TrainJob, DeterministicRunsAndResumesAreBitIdenticalAndRecorded) {
  const bool flag_before = at::globalContext().deterministicAlgorithms();
  struct Restore {
    bool flag;
    ~Restore() { at::globalContext().setDeterministicAlgorithms(flag, false); }
  } restore{flag_before};
  ScopedTempDir dir;
  make_tiny_model(dir / "model");
  make_photos(dir / "photos");
  auto deterministic_run = [&](const std::string& out) {
    TrainOptions o = tiny_run(dir, 4, out);
    o.deterministic = true;
    return o;
  };
  SingleProcessCommunicator single;
  FakeHooks none;
  const TrainJobReport first = run_train_job(deterministic_run("first"), nlohmann::ordered_json::object(), single, none);
  EXPECT_TRUE(at::globalContext().deterministicAlgorithms()) << "the run applied the mode";
  const TrainJobReport second = run_train_job(deterministic_run("second"), nlohmann::ordered_json::object(), single, none);
  ASSERT_EQ(first.steps, 4);
  ASSERT_EQ(second.steps, 4);
  EXPECT_EQ(first.final_loss, second.final_loss);
  // Note [Reading a step one step late]: steps 1 and 3 (no checkpoint due) were read after steps
  // 2 and 4 were issued; the stopped run's step 3 was read before step 4, which never ran.
  EXPECT_EQ(first.steps_read_late, 2);

  const nlohmann::json config = nlohmann::json::parse(read_file(dir / "first/run_config.json"));
  EXPECT_EQ(config["resolved"]["deterministic"], true);
  EXPECT_EQ(config["resolved"]["cudnn_benchmark"], false);
  EXPECT_NE(config["resolved"]["placement"].get<std::string>().find("deterministic"), std::string::npos);
  const std::optional<CheckpointInfo> checkpoint = find_checkpoint(dir / "first/checkpoints");
  ASSERT_TRUE(checkpoint.has_value());
  EXPECT_EQ(checkpoint->manifest.value("deterministic", false), true) << "what a resume compares with";

  FakeHooks signalled;
  signalled.stop_from = 3;
  const TrainJobReport stopped = run_train_job(deterministic_run("resumed"), nlohmann::ordered_json::object(), single, signalled);
  EXPECT_TRUE(stopped.stopped);
  EXPECT_EQ(stopped.steps, 3);
  EXPECT_EQ(stopped.steps_read_late, 1);
  const TrainJobReport resumed = run_train_job(deterministic_run("resumed"), nlohmann::ordered_json::object(), single, none);
  EXPECT_EQ(resumed.steps, 4);
  EXPECT_EQ(resumed.final_loss, first.final_loss);

  const std::map<std::string, at::Tensor> a = tensors_of(dir / "first/trainer_state.safetensors");
  for (const std::string run : {"second", "resumed"}) {
    const std::map<std::string, at::Tensor> b = tensors_of(dir / (run + "/trainer_state.safetensors"));
    ASSERT_EQ(a.size(), b.size()) << run;
    for (const auto& [name, t] : a) {
      ASSERT_TRUE(b.count(name)) << run << ": " << name;
      EXPECT_TRUE(at::equal(t, b.at(name))) << run << ": " << name << " differs from the first deterministic run";
    }
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
