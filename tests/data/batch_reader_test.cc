// The prefetching batch reader: the same batches as the sampler alone, positions that resume
// exactly, a failure on the background thread surfacing in next(), and a shutdown with a full
// queue.
#include "data/batch_reader.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

#include "core/error.h"
#include "core/check.h"
#include "data_test_util.h"

namespace xltune {
namespace {

ShardSample tagged(uint64_t i) {
  ShardSample s;
  s.caption = "sample " + std::to_string(i);
  return s;
}

TEST(BatchReader, DeliversTheSamplersBatchesInOrder) {
  DistributedSampler reference(11, 2, 1, 77);
  BatchReader reader(tagged, DistributedSampler(11, 2, 1, 77), 4, 3);
  for (int k = 0; k < 9; ++k) {  // several epochs (6 per rank: batches of 4 and 2)
    std::vector<uint64_t> want = reference.next_batch(4);
    Batch b = reader.next();
    EXPECT_EQ(b.indices, want) << "batch " << k;
    ASSERT_EQ(b.samples.size(), want.size());
    for (size_t j = 0; j < want.size(); ++j) EXPECT_EQ(b.samples[j].caption, "sample " + std::to_string(want[j]));
    EXPECT_EQ(b.position_after, reference.position());
  }
}

TEST(BatchReader, PositionOfTheLastBatchResumesExactly) {
  SamplerPosition saved;
  std::vector<std::vector<uint64_t>> after;
  {
    BatchReader reader(tagged, DistributedSampler(30, 4, 2, 5), 3, 4);
    for (int k = 0; k < 5; ++k) saved = reader.next().position_after;
    for (int k = 0; k < 6; ++k) after.push_back(reader.next().indices);
  }  // the reader had read ahead; its sampler's own position is not what a checkpoint saves
  DistributedSampler resumed(30, 4, 2, 5);
  resumed.restore(saved);
  BatchReader reader(tagged, resumed, 3, 4);
  for (int k = 0; k < 6; ++k) EXPECT_EQ(reader.next().indices, after[k]) << k;
}

TEST(BatchReader, ExceptionsReachTheCaller) {
  BatchReader reader(
      [](uint64_t i) -> ShardSample {
        if (i == 3) XLTUNE_FAIL("cannot read sample ", i, " (injected)");
        return tagged(i);
      },
      DistributedSampler(6, 1, 0, 0), 1, 2);
  bool thrown = false;
  for (int k = 0; k < 6 && !thrown; ++k) {
    try {
      Batch b = reader.next();
      EXPECT_NE(b.indices[0], 3u);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cannot read sample 3 (injected)"), std::string::npos);
      thrown = true;
    }
  }
  EXPECT_TRUE(thrown);
  EXPECT_THROW(reader.next(), Error) << "the failure stays reported";
}

TEST(BatchReader, StopsWithAFullQueue) {
  // No clock: the test waits until the reader has loaded the batch it handed out and the depth
  // (2) batches behind it, so its thread is waiting for room in a full queue (or about to queue
  // the last of them). Destroying the reader must release that thread: the test ending at all is
  // the check (a hang is what ctest's timeout reports), and a loaded machine cannot fail it.
  std::mutex mutex;
  std::condition_variable loaded;
  int loads = 0;
  {
    BatchReader reader(
        [&](uint64_t i) {
          {
            std::lock_guard<std::mutex> lock(mutex);
            ++loads;
          }
          loaded.notify_all();
          return tagged(i);
        },
        DistributedSampler(1000, 1, 0, 0), 8, 2);
    reader.next();
    std::unique_lock<std::mutex> lock(mutex);  // declared after the reader: unlocked before it stops
    loaded.wait(lock, [&] { return loads >= 8 * 3; });
  }
  std::lock_guard<std::mutex> lock(mutex);
  EXPECT_LE(loads, 8 * 4) << "bounded: it must not read ahead beyond the queue depth";
}

TEST(BatchReader, ReadsRealShards) {
  data_testing::TempDir temp("reader");
  const std::string dir = temp / "set";
  {
    ShardWriter w(dir, ShardSetInfo{4}, 4 * 4 * 4 * 2);
    for (int i = 0; i < 5; ++i) {
      ShardSample s;
      s.image.assign(48, static_cast<uint8_t>(i));
      s.mask.assign(16, static_cast<uint8_t>(10 * i));
      s.caption = "c" + std::to_string(i);
      s.source = "s" + std::to_string(i);
      w.add(s);
    }
    w.finish();
  }
  ShardSet set(dir);
  BatchReader reader(set, DistributedSampler(set.size(), 1, 0, 9), 2);
  for (int k = 0; k < 6; ++k) {
    Batch b = reader.next();
    for (size_t j = 0; j < b.indices.size(); ++j) {
      EXPECT_EQ(b.samples[j].caption, "c" + std::to_string(b.indices[j]));
      EXPECT_EQ(b.samples[j].image[0], b.indices[j]);
    }
  }
}

}  // namespace
}  // namespace xltune
