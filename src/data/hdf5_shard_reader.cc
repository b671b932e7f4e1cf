// The reader half of hdf5_shards.h: the index, then each shard checked against it.
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/check.h"
#include "data/hdf5_handle.h"
#include "data/hdf5_shards.h"

namespace xltune {

namespace {
std::vector<std::string> read_strings(hid_t file, const char* name, uint64_t n, const std::string& path) {
  H5Id set = XLTUNE_H5_ID(H5Dopen2(file, name, H5P_DEFAULT), H5Dclose, "open /", name, " in ", path);
  H5Id space = XLTUNE_H5_ID(H5Dget_space(set.get()), H5Sclose, "read /", name, " in ", path);
  hsize_t dims[1] = {0};
  XLTUNE_CHECK(H5Sget_simple_extent_ndims(space.get()) == 1 && H5Sget_simple_extent_dims(space.get(), dims, nullptr) == 1 &&
                   dims[0] == n,
               path, ": /", name, " should hold ", n, " strings");
  H5Id type = utf8_string_type();
  std::vector<char*> raw(n, nullptr);
  XLTUNE_H5_CHECK(H5Dread(set.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()), "read /", name, " in ", path);
  std::vector<std::string> out;
  for (char* s : raw) out.emplace_back(s != nullptr ? s : "");
#if H5_VERSION_GE(1, 12, 0)
  H5Treclaim(type.get(), space.get(), H5P_DEFAULT, raw.data());
#else
  H5Dvlen_reclaim(type.get(), space.get(), H5P_DEFAULT, raw.data());
#endif
  return out;
}

std::vector<int32_t> read_pairs(hid_t file, const char* name, uint64_t n, const std::string& path) {
  H5Id set = XLTUNE_H5_ID(H5Dopen2(file, name, H5P_DEFAULT), H5Dclose, "open /", name, " in ", path);
  H5Id space = XLTUNE_H5_ID(H5Dget_space(set.get()), H5Sclose, "read /", name, " in ", path);
  hsize_t dims[2] = {0, 0};
  XLTUNE_CHECK(H5Sget_simple_extent_ndims(space.get()) == 2 && H5Sget_simple_extent_dims(space.get(), dims, nullptr) == 2 &&
                   dims[0] == n && dims[1] == 2,
               path, ": /", name, " should be [", n, ", 2]");
  std::vector<int32_t> out(n * 2);
  XLTUNE_H5_CHECK(H5Dread(set.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), "read /", name, " in ", path);
  return out;
}

void check_dims(hid_t dataset, const std::vector<hsize_t>& want, const std::string& what) {
  H5Id space = XLTUNE_H5_ID(H5Dget_space(dataset), H5Sclose, "inspect ", what);
  std::vector<hsize_t> dims(want.size());
  XLTUNE_CHECK(H5Sget_simple_extent_ndims(space.get()) == static_cast<int>(want.size()) &&
                   H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) == static_cast<int>(want.size()) && dims == want,
               what, " has the wrong shape for this index");
}

void read_u8(hid_t dataset, uint64_t row, const std::vector<hsize_t>& sample_dims, std::vector<uint8_t>* out,
             const std::string& what) {
  std::vector<hsize_t> start{row}, count{1};
  size_t n = 1;
  for (hsize_t d : sample_dims) start.push_back(0), count.push_back(d), n *= d;
  out->resize(n);
  H5Id file_space = XLTUNE_H5_ID(H5Dget_space(dataset), H5Sclose, "read ", what);
  XLTUNE_H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
                  "read ", what);
  H5Id memory = XLTUNE_H5_ID(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose, "read ", what);
  XLTUNE_H5_CHECK(H5Dread(dataset, H5T_NATIVE_UINT8, memory.get(), file_space.get(), H5P_DEFAULT, out->data()), "read ", what);
}
}  // namespace

struct ShardSet::Shard {
  std::string path;
  uint64_t first = 0, samples = 0;
  H5Id file, images, masks;
  std::vector<std::string> captions, sources;
  std::vector<int32_t> sizes, corners;
  // Version 2 (Note [Shard format]): each sample's (height, width), its row in its bucket's
  // datasets, and those datasets by bucket name.
  std::vector<int32_t> image_sizes;
  std::vector<uint64_t> bucket_rows;
  std::map<std::string, std::pair<H5Id, H5Id>> buckets;
};

namespace {
std::string bucket_of(const std::vector<int32_t>& image_sizes, uint64_t row) {
  return std::to_string(image_sizes[2 * row + 1]) + "x" + std::to_string(image_sizes[2 * row]);
}

// Version 2: every sample's size, its row in its bucket, each bucket's datasets of the right shape.
void open_buckets(ShardSet::Shard& shard, const ShardSetInfo& info) {
  const hid_t f = shard.file.get();
  const std::string& p = shard.path;
  shard.image_sizes = read_pairs(f, "image_sizes", shard.samples, p);
  std::map<std::string, uint64_t> rows;
  for (uint64_t i = 0; i < shard.samples; ++i) {
    const int32_t h = shard.image_sizes[2 * i], w = shard.image_sizes[2 * i + 1];
    XLTUNE_CHECK(h > 0 && w > 0 && int64_t{h} * w <= int64_t{info.resolution} * info.resolution * 4, p,
                 ": sample ", shard.first + i, " is ", w, "x", h, ", not a bucket of resolution ", info.resolution);
    shard.bucket_rows.push_back(rows[bucket_of(shard.image_sizes, i)]++);
  }
  for (const auto& [name, n] : rows) {
    const auto x = name.find('x');
    const hsize_t w = std::stoull(name.substr(0, x)), h = std::stoull(name.substr(x + 1));
    H5Id images = XLTUNE_H5_ID(H5Dopen2(f, ("images_" + name).c_str(), H5P_DEFAULT), H5Dclose, "open /images_", name,
                               " in ", p);
    H5Id masks = XLTUNE_H5_ID(H5Dopen2(f, ("masks_" + name).c_str(), H5P_DEFAULT), H5Dclose, "open /masks_", name,
                              " in ", p);
    check_dims(images.get(), {n, h, w, 3}, p + ": /images_" + name);
    check_dims(masks.get(), {n, h, w}, p + ": /masks_" + name);
    shard.buckets.emplace(name, std::make_pair(std::move(images), std::move(masks)));
  }
}
}  // namespace

ShardSet::ShardSet(const std::string& dir) : dir_(dir) {
  hdf5_init();
  const std::string index_path = dir + "/index.json";
  struct stat st {};
  if (::stat(index_path.c_str(), &st) != 0) {
    XLTUNE_CHECK(::stat(dir.c_str(), &st) == 0, "shard set ", dir, ": no such folder");
    XLTUNE_FAIL("shard set ", dir, ": no index.json, so it is not a complete shard set (a half-written set: "
                "preprocessing stopped before the end); run xltune preprocess again");
  }
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(read_file(index_path));
    XLTUNE_CHECK(index.value("format", "") == kShardFormat, index_path, ": format is not '", kShardFormat, "'");
    const int version = index.value("version", 0);
    XLTUNE_CHECK(version == kShardFormatVersion || version == kShardFormatVersionBuckets, index_path,
                 ": format version ", version, ", this xltune reads versions ", kShardFormatVersion, " and ",
                 kShardFormatVersionBuckets);
    info_.aspect_buckets = version == kShardFormatVersionBuckets;
    if (info_.aspect_buckets) {
      info_.bucket_step = index.at("aspect_buckets").at("bucket_step").get<int>();
      info_.max_aspect_ratio = index.at("aspect_buckets").at("max_aspect_ratio").get<double>();
    }
    info_.resolution = index.at("resolution").get<int>();
    info_.token_string = index.at("token_string").get<std::string>();
    info_.special_tokens = index.at("special_tokens").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    XLTUNE_FAIL(index_path, ": not a valid shard index: ", e.what());
  }
  const hsize_t r = static_cast<hsize_t>(info_.resolution);
  H5Id fapl = file_access_without_locking();
  for (const auto& entry : index.at("shards")) {
    auto shard = std::make_unique<Shard>();
    std::string file;
    uint64_t bytes = 0;
    try {
      file = entry.at("file").get<std::string>();
      shard->samples = entry.at("samples").get<uint64_t>();
      shard->first = entry.at("first_sample").get<uint64_t>();
      bytes = entry.at("bytes").get<uint64_t>();
    } catch (const nlohmann::json::exception& e) {
      XLTUNE_FAIL(index_path, ": bad shard entry: ", e.what());
    }
    XLTUNE_CHECK(file.find('/') == std::string::npos && file.rfind("shard-", 0) == 0, index_path, ": shard name '", file,
                 "' is not a shard file in the folder");
    XLTUNE_CHECK(shard->first == total_ && shard->samples > 0, index_path, ": shard ", file, " starts at sample ",
                 shard->first, ", expected ", total_);
    shard->path = dir + "/" + file;
    XLTUNE_CHECK(::stat(shard->path.c_str(), &st) == 0, shard->path, ": listed in the index but missing");
    XLTUNE_CHECK(static_cast<uint64_t>(st.st_size) == bytes, shard->path, ": ", st.st_size, " bytes, the index says ",
                 bytes, " (the set was changed after it was written, or is being rewritten)");
    const std::string& p = shard->path;
    shard->file = XLTUNE_H5_ID(H5Fopen(p.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose, "open shard ", p);
    const hid_t f = shard->file.get();
    XLTUNE_CHECK(read_string_attribute(f, "format", p) == kShardFormat, p, ": not an xltune shard");
    XLTUNE_CHECK(read_int_attribute(f, "resolution", p) == info_.resolution &&
                     read_int_attribute(f, "num_samples", p) == static_cast<int64_t>(shard->samples) &&
                     read_int_attribute(f, "first_sample", p) == static_cast<int64_t>(shard->first),
                 p, ": its attributes disagree with ", index_path);
    XLTUNE_CHECK(read_int_attribute(f, "format_version", p) == (info_.aspect_buckets ? kShardFormatVersionBuckets
                                                                                      : kShardFormatVersion),
                 p, ": its format version disagrees with ", index_path);
    if (info_.aspect_buckets) {
      open_buckets(*shard, info_);
    } else {
      shard->images = XLTUNE_H5_ID(H5Dopen2(f, "images", H5P_DEFAULT), H5Dclose, "open /images in ", p);
      shard->masks = XLTUNE_H5_ID(H5Dopen2(f, "masks", H5P_DEFAULT), H5Dclose, "open /masks in ", p);
      check_dims(shard->images.get(), {shard->samples, r, r, 3}, p + ": /images");
      check_dims(shard->masks.get(), {shard->samples, r, r}, p + ": /masks");
    }
    shard->captions = read_strings(f, "captions", shard->samples, p);
    shard->sources = read_strings(f, "source_names", shard->samples, p);
    shard->sizes = read_pairs(f, "original_sizes", shard->samples, p);
    shard->corners = read_pairs(f, "crop_top_left", shard->samples, p);
    total_ += shard->samples;
    shards_.push_back(std::move(shard));
  }
  XLTUNE_CHECK(total_ > 0 && total_ == index.value("num_samples", uint64_t{0}), index_path, ": num_samples ",
               index.value("num_samples", uint64_t{0}), " but the shards hold ", total_);
}

ShardSet::~ShardSet() = default;

ShardSample ShardSet::read(uint64_t index) const {
  XLTUNE_CHECK(index < total_, "shard set ", dir_, ": sample ", index, " of ", total_);
  auto it = std::upper_bound(shards_.begin(), shards_.end(), index,
                             [](uint64_t i, const std::unique_ptr<Shard>& s) { return i < s->first; });
  const Shard& s = **(it - 1);
  const uint64_t row = index - s.first;
  ShardSample out;
  out.height = out.width = info_.resolution;
  hid_t images = s.images.get(), masks = s.masks.get();
  uint64_t data_row = row;
  if (info_.aspect_buckets) {
    out.height = s.image_sizes[2 * row], out.width = s.image_sizes[2 * row + 1];
    const auto& datasets = s.buckets.at(bucket_of(s.image_sizes, row));
    images = datasets.first.get(), masks = datasets.second.get();
    data_row = s.bucket_rows[row];
  }
  const hsize_t h = static_cast<hsize_t>(out.height), w = static_cast<hsize_t>(out.width);
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    read_u8(images, data_row, {h, w, 3}, &out.image, str("sample ", index, " from ", s.path));
    read_u8(masks, data_row, {h, w}, &out.mask, str("the mask of sample ", index, " from ", s.path));
  }
  out.caption = s.captions[row];
  out.source = s.sources[row];
  out.original_height = s.sizes[2 * row];
  out.original_width = s.sizes[2 * row + 1];
  out.crop_top = s.corners[2 * row];
  out.crop_left = s.corners[2 * row + 1];
  return out;
}

}  // namespace xltune
