// The resume plan of `xltune train`: which checkpoint, which seed, and the refusals, before any
// model loads.
#include "job/resume_plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "dist/communicator.h"
#include "test_util.h"

namespace xltune {
namespace {

namespace fs = std::filesystem;
using testing::HasSubstr;
using testing::ThrowsMessage;
using testing_util::ScopedTempDir;

// A complete checkpoint at `step` in OUTPUT_DIR/checkpoints, made with `meaning`.
void make_checkpoint(const std::string& output_dir, int64_t step, const nlohmann::json& meaning) {
  SingleProcessCommunicator comm;
  const std::string root = output_dir + "/checkpoints";
  fs::create_directories(root + "/" + checkpoint_name(step));
  std::ofstream(root + "/" + checkpoint_name(step) + "/trainer.safetensors") << "stand-in";
  commit_checkpoint(comm, root, step, {{"meaning", meaning}, {"max_train_steps", 10}}, 0);
}

nlohmann::json meaning_with(uint64_t seed) {
  return {{"seed", seed}, {"pivot_step", 5}, {"lora_lr", 1e-4}, {"input_images", "content:abc"}};
}

TrainOptions writing_to(const std::string& output_dir) {
  TrainOptions o;
  o.output_dir = output_dir;
  return o;
}

TEST(ResumePlan, ANewRunTakesSeedOrDrawsOne) {
  ScopedTempDir dir;
  SingleProcessCommunicator comm;
  TrainOptions o = writing_to(dir.path());
  o.seed = 42;
  ResumePlan plan = plan_resume(o, comm);
  EXPECT_FALSE(plan.resuming());
  EXPECT_EQ(plan.step(), 0);
  EXPECT_EQ(plan.seed, 42u);
  EXPECT_FALSE(plan.seed_was_random);
  o.seed.reset();
  plan = plan_resume(o, comm);
  EXPECT_TRUE(plan.seed_was_random);
}

TEST(ResumePlan, AResumedRunTakesTheCheckpointsSeed) {
  ScopedTempDir dir;
  make_checkpoint(dir.path(), 4, meaning_with(7));
  SingleProcessCommunicator comm;
  TrainOptions o = writing_to(dir.path());
  ResumePlan plan = plan_resume(o, comm);
  ASSERT_TRUE(plan.resuming());
  EXPECT_EQ(plan.step(), 4);
  EXPECT_EQ(plan.seed, 7u);
  EXPECT_FALSE(plan.seed_was_random);
  EXPECT_EQ(plan.meaning().at("pivot_step"), 5);
  o.seed = 8;
  EXPECT_THAT([&] { plan_resume(o, comm); }, ThrowsMessage<Error>(HasSubstr("was made with seed 7")));
  o.resume = "none";
  EXPECT_FALSE(plan_resume(o, comm).resuming());
  o.resume = dir / "checkpoints/step-00000004";
  o.seed = 7;
  EXPECT_EQ(plan_resume(o, comm).step(), 4);
}

TEST(ResumePlan, ARunThatMeansSomethingElseIsRefused) {
  ScopedTempDir dir;
  make_checkpoint(dir.path(), 4, meaning_with(7));
  SingleProcessCommunicator comm;
  TrainOptions o = writing_to(dir.path());
  const ResumePlan plan = plan_resume(o, comm);
  nlohmann::json ours = meaning_with(7);
  ours["pivot_step"] = 50;  // the checkpoint's pivot is the run's: not compared
  EXPECT_NO_THROW(check_resume_matches(plan, ours, /*from_shards=*/false, 10));
  EXPECT_THAT([&] { check_resume_matches(plan, ours, false, 3); },
              ThrowsMessage<Error>(HasSubstr("--max_train_steps 3: the checkpoint in")));
  EXPECT_THAT([&] { check_resume_matches(plan, ours, true, 10); },
              ThrowsMessage<Error>(HasSubstr("was trained from --input_images")));
  ours["lora_lr"] = 2e-4;
  EXPECT_THAT([&] { check_resume_matches(plan, ours, false, 10); },
              ThrowsMessage<Error>(HasSubstr("--lora_lr 0.0002: the checkpoint in")));
}

// Note [Deterministic mode]: not part of the run's meaning (no refusal), but a resume that cannot
// keep the checkpoint's run bit-identical says why.
TEST(ResumePlan, LeavingDeterministicModeOrTheRankCountIsNamedNotRefused) {
  ResumePlan plan;
  EXPECT_EQ(resume_determinism_warning(plan, false, 1), "") << "a new run continues nothing";
  plan.checkpoint = CheckpointInfo{"ckpt", 4, {{"world_size", 2}}};
  EXPECT_EQ(resume_determinism_warning(plan, false, 2), "") << "a manifest without the field: not deterministic";
  plan.checkpoint->manifest["deterministic"] = false;
  EXPECT_EQ(resume_determinism_warning(plan, true, 2), "") << "nothing was promised before the checkpoint";
  plan.checkpoint->manifest["deterministic"] = true;
  EXPECT_EQ(resume_determinism_warning(plan, true, 2), "");
  EXPECT_THAT(resume_determinism_warning(plan, false, 2),
              HasSubstr("the checkpoint in ckpt was written by a --deterministic true run; this one (--deterministic false)"));
  EXPECT_THAT(resume_determinism_warning(plan, true, 4), HasSubstr("was written on 2 ranks, this run has 4"));
}

}  // namespace
}  // namespace xltune
