// The output folder of a run: an earlier run's outputs cleared, a resumed run's metrics (and
// TensorBoard event files) kept.
#include "job/run_outputs.h"

#include <gtest/gtest.h>

#include <fstream>

#include "core/atomic_file.h"
#include "data/image_codec.h"
#include "job/loss_plot.h"
#include "test_util.h"

namespace xltune {
namespace {

namespace fs = std::filesystem;
using testing_util::ScopedTempDir;

void touch(const std::string& path, const std::string& text = "x") {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

TEST(RunOutputs, AnEarlierRunsOutputsAndUnfinishedCheckpointsGo) {
  ScopedTempDir dir;
  for (const char* f : kRunOutputs) touch(dir / f);
  touch(dir / "notes.txt");
  touch(dir / "shards/index.json");
  touch(dir / "checkpoints/step-00000002/manifest.json");
  touch(dir / "checkpoints/step-00000004/trainer.safetensors");  // no manifest: unfinished
  EXPECT_TRUE(clear_run_outputs(dir.path(), 0).empty());
  for (const char* f : kRunOutputs) EXPECT_FALSE(fs::exists(dir / f)) << f;
  EXPECT_TRUE(fs::exists(dir / "notes.txt"));
  EXPECT_TRUE(fs::exists(dir / "shards/index.json"));
  EXPECT_TRUE(fs::exists(dir / "checkpoints/step-00000002/manifest.json"));
  EXPECT_FALSE(fs::exists(dir / "checkpoints/step-00000004"));
}

TEST(RunOutputs, AResumedRunKeepsTheMetricsOfItsSteps) {
  ScopedTempDir dir;
  touch(dir / "metrics.jsonl", "{\"step\":1,\"loss\":0.5}\n{\"step\":2,\"loss\":0.25}\n{\"step\":3,\"loss\":0.125}\n");
  const std::vector<std::string> kept = clear_run_outputs(dir.path(), 2);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[1], "{\"step\":2,\"loss\":0.25}");
  EXPECT_FALSE(fs::exists(dir / "metrics.jsonl"));
  MetricsLog log(dir / "metrics.jsonl", kept);
  log.append("{\"step\":3,\"loss\":0.75}", 0.75);
  log.close();
  EXPECT_EQ(log.losses(), (std::vector<double>{0.5, 0.25, 0.75}));
  EXPECT_EQ(read_file(dir / "metrics.jsonl"),
            "{\"step\":1,\"loss\":0.5}\n{\"step\":2,\"loss\":0.25}\n{\"step\":3,\"loss\":0.75}\n");
}

// Note [Validation loss]: the metrics' validation losses, kept and appended, at their steps, and
// loss.png draws them (orange: B 30, G 120, R 230) beside the per-step losses (blue).
TEST(RunOutputs, ValidationLossesReachTheLossPlot) {
  ScopedTempDir dir;
  const std::vector<std::string> kept = {R"({"step":1,"loss":0.5})", R"({"step":2,"loss":0.25,"validation_loss":0.3})"};
  MetricsLog log(dir / "metrics.jsonl", kept);
  log.append(R"({"step":3,"loss":0.75})", 0.75);
  log.append(R"({"step":4,"loss":0.5,"validation_loss":0.4})", 0.5);
  log.close();
  EXPECT_EQ(log.validation_losses(), (std::vector<std::pair<int64_t, double>>{{2, 0.3}, {4, 0.4}}));
  const auto orange_pixels = [](const std::string& png) {
    const cv::Mat bgr = decode_pixels(png, ImageFormat::kPng, "loss.png", 1 << 24);
    int64_t n = 0;
    for (int y = 0; y < bgr.rows; ++y)
      for (int x = 0; x < bgr.cols; ++x) {
        const cv::Vec3b p = bgr.at<cv::Vec3b>(y, x);
        n += p[0] == 30 && p[1] == 120 && p[2] == 230 ? 1 : 0;
      }
    return n;
  };
  write_loss_plot(dir / "with.png", log.losses(), "t", log.validation_losses());
  write_loss_plot(dir / "without.png", log.losses(), "t");
  EXPECT_GT(orange_pixels(read_file(dir / "with.png")), 50);
  EXPECT_EQ(orange_pixels(read_file(dir / "without.png")), 0);
}

// --report_to tensorboard's logs/: a resumed run adds a file to them (TensorBoard drops the events
// of the steps it logs again); a run that starts over removes them.
TEST(RunOutputs, ARunThatStartsOverRemovesTheEarlierEventFiles) {
  ScopedTempDir dir;
  { TensorBoardLog earlier(dir / kTensorBoardDir); }
  clear_run_outputs(dir.path(), 1);  // a resumed run: its earlier events stay
  EXPECT_FALSE(fs::is_empty(dir / kTensorBoardDir));
  clear_run_outputs(dir.path(), 0);
  EXPECT_FALSE(fs::exists(dir / kTensorBoardDir));
}

}  // namespace
}  // namespace xltune
