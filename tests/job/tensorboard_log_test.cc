// TensorBoard event files (job/tensorboard_log.h): the TFRecord framing against bytes computed
// from the format's definition, every event a checksummed record on disk as soon as it is
// logged, metrics lines sent number by number; and (TensorBoardInterop, with
// tests/job/check_tensorboard_events.py) scalars and an image that the tensorboard package reads.
#include "job/tensorboard_log.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <opencv2/core.hpp>

#include "core/crc32c.h"
#include "core/error.h"
#include "data/image_codec.h"
#include "job/run_outputs.h"
#include "test_util.h"
#include "test_paths.h"

namespace xltune {
namespace {

namespace fs = std::filesystem;
using testing_util::ScopedTempDir;

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

uint64_t le(const std::string& bytes, size_t at, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(bytes[at + static_cast<size_t>(i)]);
  return v;
}

// The records of an event file, each one's length and data checked against their masked CRCs
// (computed here from crc32c, not by the writer's function).
std::vector<std::string> read_records(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto masked = [](const std::string& s) {
    const uint32_t c = crc32c(s.data(), s.size());
    return static_cast<uint32_t>(((c >> 15) | (c << 17)) + 0xa282ead8u);
  };
  std::vector<std::string> records;
  size_t at = 0;
  while (at < bytes.size()) {
    EXPECT_LE(at + 12, bytes.size()) << path << ": a record cut short at byte " << at;
    if (at + 12 > bytes.size()) break;
    const uint64_t n = le(bytes, at, 8);
    EXPECT_EQ(le(bytes, at + 8, 4), masked(bytes.substr(at, 8))) << "the length's CRC at byte " << at;
    EXPECT_LE(at + 16 + n, bytes.size()) << path << ": a record cut short at byte " << at;
    if (at + 16 + n > bytes.size()) break;
    records.push_back(bytes.substr(at + 12, n));
    EXPECT_EQ(le(bytes, at + 12 + n, 4), masked(records.back())) << "the data's CRC at byte " << at;
    at += 16 + n;
  }
  return records;
}

bool holds(const std::string& record, const std::string& text) { return record.find(text) != std::string::npos; }

TEST(TfRecord, OneRecordAsTheFormatDefinesIt) {
  // A record holding "hello", computed in Python from the format's definition (struct.pack("<Q",
  // 5), a bitwise CRC-32C with polynomial 0x82F63B78, masked as ((crc >> 15) | (crc << 17)) +
  // 0xa282ead8), and equal to what tensorboard's own RecordWriter writes for it.
  EXPECT_EQ(tfrecord("hello"), from_hex("0500000000000000eab2043e68656c6c6fbb1f1c19"));
  EXPECT_EQ(masked_crc32c("hello"), 0x191c1fbbu);
  // No data: CRC-32C of nothing is 0, masked 0xa282ead8 (little-endian d8 ea 82 a2).
  EXPECT_EQ(tfrecord("").substr(0, 8), std::string(8, '\0'));
  EXPECT_EQ(tfrecord("").substr(12), from_hex("d8ea82a2"));
  EXPECT_EQ(tfrecord("").size(), 16u);
}

TEST(TensorBoardLog, EveryEventIsOnDiskAsSoonAsItIsLogged) {
  ScopedTempDir dir;
  TensorBoardLog log(dir / "logs");
  EXPECT_EQ(fs::path(log.path()).parent_path(), fs::path(dir / "logs"));
  EXPECT_EQ(fs::path(log.path()).filename().string().rfind("events.out.tfevents.", 0), 0u) << log.path();
  std::vector<std::string> records = read_records(log.path());
  ASSERT_EQ(records.size(), 1u);
  EXPECT_TRUE(holds(records[0], "brain.Event:2"));
  log.scalar("validation_loss", 7, 0.5);  // no close, no destructor: a killed run keeps it
  records = read_records(log.path());
  ASSERT_EQ(records.size(), 2u);
  EXPECT_TRUE(holds(records[1], "validation_loss"));
  TensorBoardLog resumed(dir / "logs");  // a resumed run: a file of its own beside the first
  EXPECT_NE(resumed.path(), log.path());
  EXPECT_EQ(read_records(log.path()).size(), 2u);
}

TEST(TensorBoardLog, TheMetricsLogSendsTheNumbersOfEachNewLine) {
  ScopedTempDir dir;
  TensorBoardLog log(dir / "logs");
  MetricsLog metrics(dir / "metrics.jsonl", {R"({"step":1,"loss":0.5,"kept_only":1})"}, &log);
  metrics.append(R"({"step":2,"loss":0.25,"lr":{"lora":0.0001},"text_encoders_ran":true,"samples":[1,3]})", 0.25);
  const std::vector<std::string> records = read_records(log.path());
  ASSERT_EQ(records.size(), 2u);  // the file version, step 2; a resumed run's kept lines are logged already
  EXPECT_TRUE(holds(records[1], "loss"));
  EXPECT_TRUE(holds(records[1], "lr/lora"));
  EXPECT_FALSE(holds(records[1], "text_encoders_ran"));
  EXPECT_FALSE(holds(records[1], "samples"));
  EXPECT_FALSE(holds(records[1], "kept_only"));
  const nlohmann::json no_step = {{"loss", 1.0}};
  EXPECT_THROW(log.scalars_of(no_step), Error);
}

// A metrics line of step `step` with `loss` (and what the loop's lines hold besides).
nlohmann::json metrics_line(int64_t step, double loss) {
  const double s = static_cast<double>(step);
  return {{"step", step}, {"epoch", (step - 1) / 2}, {"loss", loss},
          {"lr", {{"lora", 1e-4 * s}, {"text_embeddings", 3e-4}}}, {"text_encoders_ran", true}, {"samples", {0, 1}}};
}

// For check_tensorboard_events.py (ctest reference.tensorboard_reads): a run that logs steps 1..3
// (metrics lines, a scalar by tag, a 3x2 image at step 2) and is resumed at step 3 (its
// checkpoint was step 2), logging steps 3 and 4 with other losses; TensorBoard's
// EventAccumulator must read steps 1 and 2 of the first file and 3 and 4 of the second.
TEST(TensorBoardInterop, WritesWhatTensorBoardReads) {
  const std::string dir = std::string(xltune::test_paths::testdata_dir()) + "/tensorboard";
  fs::remove_all(dir);
  TensorBoardLog first(dir);
  first.start_at(1);
  for (int64_t step = 1; step <= 3; ++step) first.scalars_of(metrics_line(step, 1.0 / static_cast<double>(step)));
  first.scalar("validation_loss", 2, 0.1);
  cv::Mat rgb(2, 3, CV_8UC3);
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) rgb.at<cv::Vec3b>(r, c) = cv::Vec3b(50 * r + 10 * c, 200 - 50 * r - 10 * c, 7);
  first.image("validation", 2, encode_png(rgb, ChannelOrder::kRgb), rgb.rows, rgb.cols);
  EXPECT_EQ(read_records(first.path()).size(), 7u);
  TensorBoardLog resumed(dir);
  resumed.start_at(3);
  for (int64_t step = 3; step <= 4; ++step) resumed.scalars_of(metrics_line(step, 0.9 / static_cast<double>(step)));
  EXPECT_LT(fs::path(first.path()).filename(), fs::path(resumed.path()).filename());  // the order TensorBoard reads
  EXPECT_EQ(read_records(resumed.path()).size(), 4u);
}

}  // namespace
}  // namespace xltune
