// The writer half of hdf5_shards.h (the reader is hdf5_shard_reader.cc).
#include "data/hdf5_shards.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/log.h"
#include "data/hdf5_handle.h"

namespace xltune {

namespace {
std::string shard_name(size_t n) {
  char name[32];
  std::snprintf(name, sizeof name, "shard-%05zu.h5", n);
  return name;
}

bool is_shard_file(const std::string& name) {
  return name.rfind("shard-", 0) == 0 &&
         (name.size() > 3 && (name.compare(name.size() - 3, 3, ".h5") == 0 || name.find(".h5.partial") != std::string::npos));
}

void make_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST) {
    struct stat st {};
    XLTUNE_CHECK(::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode), "shard folder ", dir, " is not a folder");
    return;
  }
  XLTUNE_FAIL("cannot create shard folder ", dir, ": ", std::strerror(errno));
}

// Durable before it is renamed and listed in the index: HDF5 closes without fsync.
void fsync_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  XLTUNE_CHECK_ERRNO(fd, "cannot open ", path, " to sync it");
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  XLTUNE_CHECK(rc == 0, "cannot fsync ", path, ": ", std::strerror(err));
}

uint64_t file_size(const std::string& path) {
  struct stat st {};
  XLTUNE_CHECK_ERRNO(::stat(path.c_str(), &st), "cannot stat ", path);
  return static_cast<uint64_t>(st.st_size);
}

H5Id chunked_u8_dataset(hid_t file, const char* name, const std::vector<hsize_t>& sample_dims, const std::string& path) {
  std::vector<hsize_t> dims{0}, max{H5S_UNLIMITED}, chunk{1};
  for (hsize_t d : sample_dims) dims.push_back(d), max.push_back(d), chunk.push_back(d);
  const int rank = static_cast<int>(dims.size());
  H5Id space = XLTUNE_H5_ID(H5Screate_simple(rank, dims.data(), max.data()), H5Sclose, "create /", name, " in ", path);
  H5Id dcpl = XLTUNE_H5_ID(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "create /", name, " in ", path);
  XLTUNE_H5_CHECK(H5Pset_chunk(dcpl.get(), rank, chunk.data()), "set the chunk shape of /", name, " in ", path);
  return XLTUNE_H5_ID(H5Dcreate2(file, name, H5T_STD_U8LE, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT), H5Dclose,
                      "create /", name, " in ", path);
}

// Appends one sample (one chunk) to an extendible [n, ...] dataset.
void append_u8(hid_t dataset, uint64_t n, const std::vector<hsize_t>& sample_dims, const std::vector<uint8_t>& data,
               const std::string& what) {
  std::vector<hsize_t> extent{n + 1}, start{n}, count{1};
  for (hsize_t d : sample_dims) extent.push_back(d), start.push_back(0), count.push_back(d);
  const int rank = static_cast<int>(extent.size());
  XLTUNE_H5_CHECK(H5Dset_extent(dataset, extent.data()), "grow ", what);
  H5Id file_space = XLTUNE_H5_ID(H5Dget_space(dataset), H5Sclose, "write ", what);
  XLTUNE_H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
                  "write ", what);
  H5Id memory = XLTUNE_H5_ID(H5Screate_simple(rank, count.data(), nullptr), H5Sclose, "write ", what);
  XLTUNE_H5_CHECK(H5Dwrite(dataset, H5T_NATIVE_UINT8, memory.get(), file_space.get(), H5P_DEFAULT, data.data()),
                  "write ", what);
}

void write_strings(hid_t file, const char* name, const std::vector<std::string>& values, const std::string& path) {
  H5Id type = utf8_string_type();
  hsize_t n = values.size();
  H5Id space = XLTUNE_H5_ID(H5Screate_simple(1, &n, nullptr), H5Sclose, "write /", name, " in ", path);
  H5Id set = XLTUNE_H5_ID(H5Dcreate2(file, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                          H5Dclose, "create /", name, " in ", path);
  std::vector<const char*> pointers;
  for (const auto& v : values) pointers.push_back(v.c_str());
  XLTUNE_H5_CHECK(H5Dwrite(set.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, pointers.data()), "write /", name,
                  " in ", path);
}

void write_pairs(hid_t file, const char* name, const std::vector<int32_t>& values, const std::string& path) {
  hsize_t dims[2] = {values.size() / 2, 2};
  H5Id space = XLTUNE_H5_ID(H5Screate_simple(2, dims, nullptr), H5Sclose, "write /", name, " in ", path);
  H5Id set = XLTUNE_H5_ID(H5Dcreate2(file, name, H5T_STD_I32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                          H5Dclose, "create /", name, " in ", path);
  XLTUNE_H5_CHECK(H5Dwrite(set.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), "write /", name,
                  " in ", path);
}
}  // namespace

// The shard being written: its file and big datasets, and the small per-sample fields, which
// are written whole when it closes.
struct ShardWriter::Open {
  std::string path, final_path, file_name;
  H5Id file, images, masks;
  uint64_t samples = 0, first_sample = 0, bytes = 0;
  std::vector<std::string> captions, sources;
  std::vector<int32_t> sizes, corners;
  // Version 2: each bucket's datasets and rows so far, and every sample's (height, width).
  struct Bucket {
    H5Id images, masks;
    uint64_t rows = 0;
  };
  std::map<std::string, Bucket> buckets;
  std::vector<int32_t> image_sizes;
};

ShardWriter::ShardWriter(std::string dir, ShardSetInfo info, uint64_t max_shard_bytes)
    : dir_(std::move(dir)), info_(std::move(info)), max_shard_bytes_(max_shard_bytes) {
  XLTUNE_CHECK(info_.resolution > 0 && info_.resolution <= 8192, "--resolution: expected 1 to 8192, got ", info_.resolution);
  hdf5_init();
  make_dir(dir_);
  const std::string index = dir_ + "/index.json";
  if (::unlink(index.c_str()) == 0) {
    fsync_directory(dir_);
    log_info("replacing the shard set in ", dir_);
  } else {
    XLTUNE_CHECK(errno == ENOENT, "cannot remove the old ", index, ": ", std::strerror(errno));
  }
  DIR* d = ::opendir(dir_.c_str());
  XLTUNE_CHECK(d != nullptr, "cannot list ", dir_, ": ", std::strerror(errno));
  std::vector<std::string> old;
  while (auto* e = ::readdir(d))
    if (is_shard_file(e->d_name)) old.push_back(e->d_name);
  ::closedir(d);
  for (const auto& name : old)
    XLTUNE_CHECK_ERRNO(::unlink((dir_ + "/" + name).c_str()), "cannot remove the old shard ", dir_, "/", name);
}

ShardWriter::~ShardWriter() {
  if (open_) {
    std::string partial = open_->path;
    open_.reset();  // closes the HDF5 ids
    ::unlink(partial.c_str());
  }
}

void ShardWriter::open_shard() {
  auto o = std::make_unique<Open>();
  o->file_name = shard_name(done_.size());
  o->final_path = dir_ + "/" + o->file_name;
  o->path = o->final_path + ".partial";
  o->first_sample = total_;
  H5Id fapl = file_access_without_locking();
  o->file = XLTUNE_H5_ID(H5Fcreate(o->path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose, "create shard ", o->path);
  const hsize_t r = static_cast<hsize_t>(info_.resolution);
  if (!info_.aspect_buckets) {
    o->images = chunked_u8_dataset(o->file.get(), "images", {r, r, 3}, o->path);
    o->masks = chunked_u8_dataset(o->file.get(), "masks", {r, r}, o->path);
  }
  open_ = std::move(o);
}

void ShardWriter::add(const ShardSample& s) {
  XLTUNE_CHECK(!finished_, "shard set ", dir_, ": add after finish");
  const int R = info_.resolution;
  const int32_t height = s.height > 0 ? s.height : R, width = s.width > 0 ? s.width : R;
  XLTUNE_CHECK(info_.aspect_buckets || (height == R && width == R), "sample '", s.source, "': ", width, "x", height,
               " in a set of square samples at resolution ", R);
  const size_t pixels = static_cast<size_t>(height) * static_cast<size_t>(width);
  XLTUNE_CHECK(height > 0 && width > 0 && s.image.size() == pixels * 3 && s.mask.size() == pixels, "sample '",
               s.source, "': image of ", s.image.size(), " bytes and mask of ", s.mask.size(), " bytes; expected ",
               pixels * 3, " and ", pixels, " for ", width, "x", height);
  const uint64_t sample_bytes = s.image.size() + s.mask.size();
  if (open_ && open_->samples > 0 && open_->bytes + sample_bytes > max_shard_bytes_) close_shard();
  if (!open_) open_shard();
  Open& o = *open_;
  const hsize_t hh = static_cast<hsize_t>(height), hw = static_cast<hsize_t>(width);
  hid_t images = o.images.get(), masks = o.masks.get();
  uint64_t row = o.samples;
  if (info_.aspect_buckets) {
    const std::string bucket = std::to_string(width) + "x" + std::to_string(height);
    auto it = o.buckets.find(bucket);
    if (it == o.buckets.end()) {
      Open::Bucket b;
      b.images = chunked_u8_dataset(o.file.get(), ("images_" + bucket).c_str(), {hh, hw, 3}, o.path);
      b.masks = chunked_u8_dataset(o.file.get(), ("masks_" + bucket).c_str(), {hh, hw}, o.path);
      it = o.buckets.emplace(bucket, std::move(b)).first;
    }
    images = it->second.images.get(), masks = it->second.masks.get();
    row = it->second.rows++;
    o.image_sizes.insert(o.image_sizes.end(), {height, width});
  }
  append_u8(images, row, {hh, hw, 3}, s.image, str("sample ", total_, " ('", s.source, "') to ", o.path));
  append_u8(masks, row, {hh, hw}, s.mask, str("the mask of sample ", total_, " to ", o.path));
  o.captions.push_back(s.caption);
  o.sources.push_back(s.source);
  o.sizes.insert(o.sizes.end(), {s.original_height, s.original_width});
  o.corners.insert(o.corners.end(), {s.crop_top, s.crop_left});
  ++o.samples;
  o.bytes += sample_bytes;
  ++total_;
}

void ShardWriter::close_shard() {
  Open& o = *open_;
  const hid_t f = o.file.get();
  write_strings(f, "captions", o.captions, o.path);
  write_strings(f, "source_names", o.sources, o.path);
  write_pairs(f, "original_sizes", o.sizes, o.path);
  write_pairs(f, "crop_top_left", o.corners, o.path);
  if (info_.aspect_buckets) write_pairs(f, "image_sizes", o.image_sizes, o.path);
  write_attribute(f, "format", std::string(kShardFormat), o.path);
  write_attribute(f, "format_version", int64_t{format_version()}, o.path);
  write_attribute(f, "resolution", int64_t{info_.resolution}, o.path);
  write_attribute(f, "token_string", info_.token_string, o.path);
  write_attribute(f, "special_tokens", info_.special_tokens, o.path);
  write_attribute(f, "num_samples", static_cast<int64_t>(o.samples), o.path);
  write_attribute(f, "first_sample", static_cast<int64_t>(o.first_sample), o.path);
  write_attribute(f, "shard", static_cast<int64_t>(done_.size()), o.path);
  if (!info_.aspect_buckets) {
    o.images.close(str("close /images in ", o.path));
    o.masks.close(str("close /masks in ", o.path));
  }
  for (auto& [name, b] : o.buckets) {
    b.images.close(str("close /images_", name, " in ", o.path));
    b.masks.close(str("close /masks_", name, " in ", o.path));
  }
  XLTUNE_H5_CHECK(H5Fflush(f, H5F_SCOPE_LOCAL), "flush ", o.path);
  o.file.close(str("close ", o.path));
  fsync_file(o.path);
  XLTUNE_CHECK_ERRNO(::rename(o.path.c_str(), o.final_path.c_str()), "cannot rename ", o.path, " to ", o.final_path);
  done_.push_back({o.file_name, o.samples, o.first_sample, file_size(o.final_path)});
  log_info("wrote ", o.final_path, " (", o.samples, " samples, ", done_.back().bytes, " bytes)");
  open_.reset();
}

std::string ShardWriter::finish() {
  XLTUNE_CHECK(!finished_, "shard set ", dir_, ": finish twice");
  XLTUNE_CHECK(total_ > 0, "shard set ", dir_, ": no samples to write");
  if (open_) close_shard();
  fsync_directory(dir_);
  nlohmann::ordered_json index;
  index["format"] = kShardFormat;
  index["version"] = format_version();
  index["resolution"] = info_.resolution;
  index["token_string"] = info_.token_string;
  index["special_tokens"] = info_.special_tokens;
  if (info_.aspect_buckets)
    index["aspect_buckets"] = {{"bucket_step", info_.bucket_step}, {"max_aspect_ratio", info_.max_aspect_ratio}};
  index["num_samples"] = total_;
  index["shards"] = nlohmann::ordered_json::array();
  for (const auto& d : done_)
    index["shards"].push_back({{"file", d.file}, {"samples", d.samples}, {"first_sample", d.first_sample}, {"bytes", d.bytes}});
  const std::string path = dir_ + "/index.json";
  write_file_atomic(path, index.dump(2) + "\n");
  finished_ = true;
  return path;
}

}  // namespace xltune
