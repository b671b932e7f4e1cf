// Preprocessed samples in HDF5 shards: written once by rank 0, opened read-only by every rank.
//
// Note [Shard format] (format "xltune-shards", version 1, or 2 with aspect buckets)
// A shard set is a folder:
//   shard-00000.h5, shard-00001.h5, ...   the samples, in order
//   index.json                            written LAST, atomically: {"format", "version",
//                                         "resolution", "token_string", "special_tokens",
//                                         "num_samples", "shards": [{"file", "samples",
//                                         "first_sample", "bytes"}]}
// A folder without index.json is not a shard set (a half-written one: preprocessing stopped),
// and readers refuse it. A shard's size must match the index, so a set that is being
// rewritten is refused too. Shards are written as "shard-NNNNN.h5.partial" and renamed when
// closed.
//
// One shard, for N samples at resolution R (readable with h5py and h5dump):
//   /images          uint8 [N, R, R, 3]  RGB, chunked [1, R, R, 3]: one sample, one chunk
//   /masks           uint8 [N, R, R]     255 = important, chunked [1, R, R]
//   /captions        UTF-8 string [N]    special tokens already in ("a photo of <s0><s1>")
//   /source_names    UTF-8 string [N]    path inside the uploaded archive ("a/img.jpg")
//   /original_sizes  int32 [N, 2]        (height, width) of the decoded, upright image
//   /crop_top_left   int32 [N, 2]        (top, left) of the square crop, original pixels
// Root attributes: format ("xltune-shards"), format_version (1), resolution, token_string,
// special_tokens, num_samples (in this shard), first_sample (global index of its first),
// shard (its number). No compression: a 512 px sample is 1 MB and reads are random.
//
// Version 2 (--aspect_buckets, Note [Aspect buckets]) stores each sample at its bucket's size:
// instead of /images and /masks, one pair per bucket that the shard holds,
//   /images_WxH      uint8 [n, H, W, 3]  the shard's samples of bucket W x H, in sample order
//   /masks_WxH       uint8 [n, H, W]
//   /image_sizes     int32 [N, 2]        (height, width) of each sample: its bucket
// (a sample's row in its bucket's datasets is the count of the shard's earlier samples of that
// bucket); /crop_top_left is the corner of the bucket-shaped crop, still in original pixels.
// index.json adds "aspect_buckets": {"bucket_step", "max_aspect_ratio"}. Readers read versions
// 1 and 2; version 1 is still what a run without buckets writes, byte for byte as before.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace xltune {

constexpr const char* kShardFormat = "xltune-shards";
constexpr int kShardFormatVersion = 1;           // square samples at the resolution
constexpr int kShardFormatVersionBuckets = 2;    // samples at their bucket's size

struct ShardSetInfo {
  int resolution = 512;
  std::string token_string = "TOK";
  std::string special_tokens = "<s0><s1>";
  // Note [Aspect buckets]: samples at their bucket's size (format version 2).
  bool aspect_buckets = false;
  int bucket_step = 64;
  double max_aspect_ratio = 2.0;
};

struct ShardSample {
  std::vector<uint8_t> image;  // height * width * 3, RGB, row-major
  std::vector<uint8_t> mask;   // height * width
  int32_t height = 0, width = 0;  // the resolution, or the bucket (0 when writing: the resolution)
  std::string caption;
  std::string source;
  int32_t original_height = 0, original_width = 0;
  int32_t crop_top = 0, crop_left = 0;
};

class ShardWriter {
 public:
  // Starts a new set in `dir` (created if missing). An index.json already there is removed
  // first, so an old set stops being complete the moment rewriting starts; old shard files
  // (shard-*.h5, shard-*.h5.partial*) go next. Nothing else in the folder is touched.
  ShardWriter(std::string dir, ShardSetInfo info, uint64_t max_shard_bytes = uint64_t{1} << 30);
  // Without finish(): the open shard is removed and no index is written (not a set).
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  void add(const ShardSample& sample);
  // Closes the last shard, then writes index.json. Returns the path of the index.
  std::string finish();
  uint64_t samples() const { return total_; }

 private:
  struct Open;
  void open_shard();
  void close_shard();
  int format_version() const { return info_.aspect_buckets ? kShardFormatVersionBuckets : kShardFormatVersion; }

  std::string dir_;
  ShardSetInfo info_;
  uint64_t max_shard_bytes_;
  uint64_t total_ = 0;
  std::unique_ptr<Open> open_;
  struct Done {
    std::string file;
    uint64_t samples, first_sample, bytes;
  };
  std::vector<Done> done_;
  bool finished_ = false;
};

// A complete shard set, read-only. read() may be called from any thread (it holds hdf5_mutex()).
class ShardSet {
 public:
  // Throws Error for a folder without index.json ("half-written set"), a shard whose size or
  // attributes disagree with the index, or another format or version.
  explicit ShardSet(const std::string& dir);
  ~ShardSet();

  uint64_t size() const { return total_; }
  const ShardSetInfo& info() const { return info_; }
  const std::string& dir() const { return dir_; }
  ShardSample read(uint64_t index) const;
  struct Shard;  // one open shard (hdf5_shard_reader.cc)

 private:
  std::string dir_;
  ShardSetInfo info_;
  uint64_t total_ = 0;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace xltune
