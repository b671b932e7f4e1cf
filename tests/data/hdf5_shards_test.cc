// Shards: every field round-trips, shard boundaries fall where the byte limit says, a set
// without its index (or with a changed shard) is refused, and a writer that does not finish
// leaves no set behind. ShardsInterop writes a set for tests/reference/check_shards.py, which
// reads every field back with h5py (and h5dump) and compares.
#include "data/hdf5_shards.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/atomic_file.h"
#include "core/error.h"
#include "data_test_util.h"
#include "test_util.h"
#include "test_paths.h"

namespace xltune {
namespace {

using data_testing::TempDir;
using data_testing::tree;

// The content rule check_shards.py recomputes: no pixels need to be stored twice.
ShardSample make_sample(int resolution, int seed) {
  ShardSample s;
  const int r = resolution;
  s.image.resize(static_cast<size_t>(r) * r * 3);
  s.mask.resize(static_cast<size_t>(r) * r);
  for (int y = 0; y < r; ++y)
    for (int x = 0; x < r; ++x) {
      for (int c = 0; c < 3; ++c) s.image[(static_cast<size_t>(y) * r + x) * 3 + c] = static_cast<uint8_t>((x * 7 + y * 13 + c * 101 + seed * 31) % 256);
      s.mask[static_cast<size_t>(y) * r + x] = static_cast<uint8_t>((x * 3 + y * 5 + seed) % 256);
    }
  s.caption = "a photo of <s0><s1> number " + std::to_string(seed) + (seed % 2 ? ", café ☕" : "");
  s.source = seed % 3 == 0 ? "фото/img" + std::to_string(seed) + ".jpg" : "b/img" + std::to_string(seed) + ".png";
  s.original_height = 400 + seed;
  s.original_width = 600 - seed;
  s.crop_top = seed;
  s.crop_left = 2 * seed;
  return s;
}

void expect_same(const ShardSample& a, const ShardSample& b) {
  EXPECT_EQ(a.image, b.image);
  EXPECT_EQ(a.mask, b.mask);
  EXPECT_EQ(a.caption, b.caption);
  EXPECT_EQ(a.source, b.source);
  EXPECT_EQ(a.original_height, b.original_height);
  EXPECT_EQ(a.original_width, b.original_width);
  EXPECT_EQ(a.crop_top, b.crop_top);
  EXPECT_EQ(a.crop_left, b.crop_left);
}

std::string error_opening(const std::string& dir) {
  try {
    ShardSet set(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Shards, BucketedSamplesRoundTripAtTheirOwnSizes) {
  // Format version 2 (Note [Shard format]): three sizes interleaved, across shards.
  TempDir temp("shards");
  const std::string dir = temp / "set";
  ShardSetInfo info{16, "sks", "<s0><s1>"};
  info.aspect_buckets = true, info.bucket_step = 8, info.max_aspect_ratio = 2.0;
  const std::vector<std::pair<int, int>> sizes{{16, 16}, {24, 8}, {8, 24}, {24, 8}, {16, 16}, {24, 8}, {8, 24}};
  std::vector<ShardSample> written;
  for (size_t i = 0; i < sizes.size(); ++i) {
    ShardSample s = make_sample(24, static_cast<int>(i));
    const auto [w, h] = sizes[i];
    s.width = w, s.height = h;
    s.image.resize(static_cast<size_t>(w) * h * 3);
    s.mask.resize(static_cast<size_t>(w) * h);
    written.push_back(s);
  }
  {
    ShardWriter writer(dir, info, 16 * 16 * 4 * 3);
    for (const auto& s : written) writer.add(s);
    writer.finish();
  }
  const nlohmann::json index = nlohmann::json::parse(read_file(dir + "/index.json"));
  EXPECT_EQ(index["version"], 2);
  EXPECT_EQ(index["aspect_buckets"]["bucket_step"], 8);
  EXPECT_GT(index["shards"].size(), 1u);
  ShardSet set(dir);
  ASSERT_EQ(set.size(), sizes.size());
  EXPECT_TRUE(set.info().aspect_buckets);
  EXPECT_EQ(set.info().bucket_step, 8);
  for (uint64_t i = 0; i < set.size(); ++i) {
    const ShardSample got = set.read(i);
    EXPECT_EQ(got.width, sizes[i].first) << i;
    EXPECT_EQ(got.height, sizes[i].second) << i;
    expect_same(got, written[i]);
  }
  // A square set refuses a sample of another size.
  ShardWriter square(temp / "square", ShardSetInfo{16, "sks", "<s0><s1>"});
  EXPECT_THROW(square.add(written[1]), Error);
}

TEST(Shards, EveryFieldRoundTripsAcrossShards) {
  TempDir temp("shards");
  const std::string dir = temp / "set";
  const int r = 16, n = 7;
  ShardSetInfo info{r, "sks", "<s0><s1>"};
  const uint64_t per_sample = r * r * 4;
  {
    ShardWriter w(dir, info, per_sample * 3);  // three samples per shard
    for (int i = 0; i < n; ++i) w.add(make_sample(r, i));
    w.finish();
  }
  EXPECT_EQ(tree(dir), (std::vector<std::string>{"index.json", "shard-00000.h5", "shard-00001.h5", "shard-00002.h5"}));
  ShardSet set(dir);
  ASSERT_EQ(set.size(), 7u);
  EXPECT_EQ(set.info().resolution, r);
  EXPECT_EQ(set.info().token_string, "sks");
  for (int i = 0; i < n; ++i) {
    SCOPED_TRACE(i);
    expect_same(set.read(i), make_sample(r, i));
  }
  EXPECT_THROW(set.read(7), Error);
  auto index = nlohmann::json::parse(read_file(dir + "/index.json"));
  EXPECT_EQ(index["shards"].size(), 3u);
  EXPECT_EQ(index["shards"][2]["samples"], 1);
  EXPECT_EQ(index["shards"][2]["first_sample"], 6);
}

TEST(Shards, ReadsFromManyThreads) {
  TempDir temp("shards");
  const std::string dir = temp / "set";
  {
    ShardWriter w(dir, ShardSetInfo{8, "TOK", "<s0><s1>"}, 8 * 8 * 4 * 5);
    for (int i = 0; i < 20; ++i) w.add(make_sample(8, i));
    w.finish();
  }
  ShardSet set(dir);
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int k = 0; k < 100; ++k) {
        int i = (k * 7 + t) % 20;
        if (set.read(i).image != make_sample(8, i).image) ++bad;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(Shards, ASetWithoutItsIndexIsRefused) {
  TempDir temp("shards");
  const std::string dir = temp / "set";
  {
    ShardWriter w(dir, ShardSetInfo{8}, 8 * 8 * 4);
    for (int i = 0; i < 3; ++i) w.add(make_sample(8, i));
    // destroyed without finish(): as if the process stopped here
  }
  EXPECT_EQ(tree(dir), (std::vector<std::string>{"shard-00000.h5", "shard-00001.h5"})) << "the open shard is removed";
  EXPECT_CONTAINS(error_opening(dir), "no index.json, so it is not a complete shard set (a half-written set");
  EXPECT_CONTAINS(error_opening(dir + "/nope"), "no such folder");
}

TEST(Shards, RewritingRemovesTheOldIndexFirst) {
  TempDir temp("shards");
  const std::string dir = temp / "set";
  {
    ShardWriter w(dir, ShardSetInfo{8}, 8 * 8 * 4);
    for (int i = 0; i < 3; ++i) w.add(make_sample(8, i));
    w.finish();
  }
  ASSERT_EQ(ShardSet(dir).size(), 3u);
  write_file_atomic(dir + "/notes.txt", "mine");
  {
    ShardWriter w(dir, ShardSetInfo{8});
    EXPECT_CONTAINS(error_opening(dir), "no index.json") << "while rewriting, the old set must not look complete";
    w.add(make_sample(8, 9));
    w.finish();
  }
  ShardSet set(dir);
  ASSERT_EQ(set.size(), 1u);
  expect_same(set.read(0), make_sample(8, 9));
  EXPECT_EQ(tree(dir), (std::vector<std::string>{"index.json", "notes.txt", "shard-00000.h5"}));
}

TEST(Shards, AChangedShardIsRefused) {
  TempDir temp("shards");
  const std::string dir = temp / "set";
  {
    ShardWriter w(dir, ShardSetInfo{8});
    w.add(make_sample(8, 1));
    w.finish();
  }
  {
    std::ofstream out(dir + "/shard-00000.h5", std::ios::app);
    out << "x";
  }
  EXPECT_CONTAINS(error_opening(dir), "bytes, the index says");
  ::unlink((dir + "/shard-00000.h5").c_str());
  EXPECT_CONTAINS(error_opening(dir), "listed in the index but missing");
}

TEST(Shards, ABadIndexIsRefused) {
  TempDir temp("shards");
  const std::string dir = temp / "set";
  ::mkdir(dir.c_str(), 0755);
  write_file_atomic(dir + "/index.json", "{\"format\": \"something-else\"}");
  EXPECT_CONTAINS(error_opening(dir), "format is not 'xltune-shards'");
  write_file_atomic(dir + "/index.json", "{\"format\": \"xltune-shards\", \"version\": 99}");
  EXPECT_CONTAINS(error_opening(dir), "format version 99, this xltune reads versions 1 and 2");
  write_file_atomic(dir + "/index.json", "not json");
  EXPECT_CONTAINS(error_opening(dir), "not a valid shard index");
  write_file_atomic(dir + "/index.json",
                    R"({"format":"xltune-shards","version":1,"resolution":8,"token_string":"T","special_tokens":"<s0>",
                        "num_samples":1,"shards":[{"file":"../../etc/passwd","samples":1,"first_sample":0,"bytes":1}]})");
  EXPECT_CONTAINS(error_opening(dir), "is not a shard file in the folder");
}

TEST(Shards, WrongSampleSizeIsAnError) {
  TempDir temp("shards");
  const std::string dir = temp / "set";
  ShardWriter w(dir, ShardSetInfo{8});
  ShardSample s = make_sample(4, 0);
  s.source = "x.jpg";
  EXPECT_THAT([&] { w.add(s); }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr(
                                     "sample 'x.jpg': image of 48 bytes and mask of 16 bytes; expected 192 and 64")));
  EXPECT_THROW(w.finish(), Error);  // no samples
}

// Writes testdata/shards/{set/, expected.json} for check_shards.py (run after this by ctest).
TEST(ShardsInterop, WriteForPython) {
  const std::string root = std::string(xltune::test_paths::testdata_dir()) + "/shards";
  ::mkdir(xltune::test_paths::testdata_dir(), 0755);
  ::mkdir(root.c_str(), 0755);
  const int r = 24, n = 5;
  ShardSetInfo info{r, "TOK", "<s0><s1>"};
  {
    ShardWriter w(root + "/set", info, r * r * 4 * 2);
    for (int i = 0; i < n; ++i) w.add(make_sample(r, i));
    w.finish();
  }
  nlohmann::json expected;
  expected["resolution"] = r;
  expected["token_string"] = info.token_string;
  expected["special_tokens"] = info.special_tokens;
  for (int i = 0; i < n; ++i) {
    ShardSample s = make_sample(r, i);
    expected["samples"].push_back({{"seed", i}, {"caption", s.caption}, {"source", s.source},
                                   {"original_size", {s.original_height, s.original_width}},
                                   {"crop_top_left", {s.crop_top, s.crop_left}}});
  }
  write_file_atomic(root + "/expected.json", expected.dump(1));
  EXPECT_EQ(ShardSet(root + "/set").size(), static_cast<uint64_t>(n));
}

}  // namespace
}  // namespace xltune
