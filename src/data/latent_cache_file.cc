#include "data/latent_cache_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/log.h"
#include "data/hdf5_handle.h"

namespace xltune {

namespace {

void write_floats(hid_t file, const char* name, const std::vector<hsize_t>& dims, const std::vector<float>& values,
                  const std::string& path) {
  H5Id space = XLTUNE_H5_ID(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose,
                            "write /", name, " in ", path);
  H5Id set = XLTUNE_H5_ID(H5Dcreate2(file, name, H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                          H5Dclose, "create /", name, " in ", path);
  XLTUNE_H5_CHECK(H5Dwrite(set.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), "write /", name,
                  " in ", path);
}

std::vector<hsize_t> dims_of(hid_t file, const char* name, const std::string& path) {
  H5Id set = XLTUNE_H5_ID(H5Dopen2(file, name, H5P_DEFAULT), H5Dclose, "open /", name, " in ", path);
  H5Id space = XLTUNE_H5_ID(H5Dget_space(set.get()), H5Sclose, "read /", name, " in ", path);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  XLTUNE_CHECK(rank > 0 && rank <= 8, path, ": /", name, " has ", rank, " dimensions");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return dims;
}

template <typename T>
std::vector<T> read_all(hid_t file, const char* name, hid_t memory_type, size_t n, const std::string& path) {
  H5Id set = XLTUNE_H5_ID(H5Dopen2(file, name, H5P_DEFAULT), H5Dclose, "open /", name, " in ", path);
  std::vector<T> out(n);
  XLTUNE_H5_CHECK(H5Dread(set.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), "read /", name, " in ",
                  path);
  return out;
}

double read_double_attribute(hid_t object, const char* name, const std::string& path) {
  H5Id attr = XLTUNE_H5_ID(H5Aopen(object, name, H5P_DEFAULT), H5Aclose, "read attribute ", name, " of ", path);
  double v = 0;
  XLTUNE_H5_CHECK(H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &v), "read attribute ", name, " of ", path);
  return v;
}

void write_double_attribute(hid_t object, const char* name, double value, const std::string& path) {
  H5Id space = XLTUNE_H5_ID(H5Screate(H5S_SCALAR), H5Sclose, "write attribute ", name, " of ", path);
  H5Id attr = XLTUNE_H5_ID(H5Acreate2(object, name, H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                           "write attribute ", name, " of ", path);
  XLTUNE_H5_CHECK(H5Awrite(attr.get(), H5T_NATIVE_DOUBLE, &value), "write attribute ", name, " of ", path);
}

}  // namespace

std::vector<size_t> LatentCache::offsets() const {
  std::vector<size_t> out(heights.size() + 1, 0);
  for (size_t i = 0; i < heights.size(); ++i) out[i + 1] = out[i] + values_of(i);
  return out;
}

bool LatentCache::one_size() const {
  for (size_t i = 1; i < heights.size(); ++i)
    if (heights[i] != heights[0] || widths[i] != widths[0]) return false;
  return true;
}

void write_latent_cache(const std::string& path, const LatentCache& c) {
  const size_t n = c.key.samples.size();
  XLTUNE_CHECK(n > 0 && c.heights.size() == n && c.widths.size() == n, "latent cache ", path, ": ", n, " samples but ",
               c.heights.size(), " sizes");
  const size_t values = c.offsets().back();
  XLTUNE_CHECK(c.mean.size() == values && c.logvar.size() == values, "latent cache ", path, ": ", n,
               " samples but ", c.mean.size(), " values");
  hdf5_init();
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  const std::string temp = path + ".partial";
  {
    H5Id fapl = file_access_without_locking();
    H5Id file = XLTUNE_H5_ID(H5Fcreate(temp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose, "create ", temp);
    const std::vector<hsize_t> dims =
        c.one_size() ? std::vector<hsize_t>{n, static_cast<hsize_t>(c.channels), static_cast<hsize_t>(c.heights[0]),
                                            static_cast<hsize_t>(c.widths[0])}
                     : std::vector<hsize_t>{values};
    write_floats(file.get(), "mean", dims, c.mean, temp);
    write_floats(file.get(), "logvar", dims, c.logvar, temp);
    {
      hsize_t size_dims[2] = {n, 2};
      H5Id space = XLTUNE_H5_ID(H5Screate_simple(2, size_dims, nullptr), H5Sclose, "write /latent_sizes in ", temp);
      H5Id set = XLTUNE_H5_ID(H5Dcreate2(file.get(), "latent_sizes", H5T_STD_I32LE, space.get(), H5P_DEFAULT,
                                         H5P_DEFAULT, H5P_DEFAULT),
                              H5Dclose, "create /latent_sizes in ", temp);
      std::vector<int32_t> sizes;
      for (size_t i = 0; i < n; ++i)
        sizes.insert(sizes.end(), {static_cast<int32_t>(c.heights[i]), static_cast<int32_t>(c.widths[i])});
      XLTUNE_H5_CHECK(H5Dwrite(set.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, sizes.data()),
                      "write /latent_sizes in ", temp);
    }
    {
      hsize_t count = n;
      H5Id space = XLTUNE_H5_ID(H5Screate_simple(1, &count, nullptr), H5Sclose, "write /samples in ", temp);
      H5Id set = XLTUNE_H5_ID(H5Dcreate2(file.get(), "samples", H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                                         H5P_DEFAULT),
                              H5Dclose, "create /samples in ", temp);
      std::vector<int64_t> ids(c.key.samples.begin(), c.key.samples.end());
      XLTUNE_H5_CHECK(H5Dwrite(set.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids.data()),
                      "write /samples in ", temp);
    }
    write_attribute(file.get(), "format", std::string(kLatentCacheFormat), temp);
    write_attribute(file.get(), "format_version", int64_t{kLatentCacheFormatVersion}, temp);
    write_attribute(file.get(), "resolution", c.key.resolution, temp);
    write_attribute(file.get(), "channels", c.channels, temp);
    write_attribute(file.get(), "vae", c.key.vae_fingerprint, temp);
    write_attribute(file.get(), "shards", c.key.shards_fingerprint, temp);
    write_double_attribute(file.get(), "scaling_factor", c.scaling_factor, temp);
    XLTUNE_H5_CHECK(H5Fflush(file.get(), H5F_SCOPE_LOCAL), "flush ", temp);
    file.close(str("close ", temp));
  }
  int fd = ::open(temp.c_str(), O_RDONLY | O_CLOEXEC);
  XLTUNE_CHECK_ERRNO(fd, "cannot open ", temp, " to sync it");
  const int rc = ::fsync(fd);
  ::close(fd);
  XLTUNE_CHECK(rc == 0, "cannot fsync ", temp);
  XLTUNE_CHECK_ERRNO(::rename(temp.c_str(), path.c_str()), "cannot rename ", temp, " to ", path);
  const auto slash = path.rfind('/');
  fsync_directory(slash == std::string::npos ? "." : path.substr(0, slash));
}

std::optional<LatentCache> read_latent_cache(const std::string& path, const LatentCacheKey& key) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  hdf5_init();
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  H5Id fapl = file_access_without_locking();
  H5Id file = XLTUNE_H5_ID(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose, "open latent cache ", path);
  const hid_t f = file.get();
  XLTUNE_CHECK(read_string_attribute(f, "format", path) == kLatentCacheFormat, path, ": not an xltune latent cache");
  auto stale = [&](const std::string& why) -> std::optional<LatentCache> {
    log_info("latent cache ", path, " is stale (", why, "): encoding again");
    return std::nullopt;
  };
  if (read_int_attribute(f, "format_version", path) != kLatentCacheFormatVersion) return stale("another format version");
  if (read_string_attribute(f, "vae", path) != key.vae_fingerprint) return stale("made with another VAE");
  if (read_string_attribute(f, "shards", path) != key.shards_fingerprint) return stale("made from other shards");
  if (read_int_attribute(f, "resolution", path) != key.resolution) return stale("another resolution");
  LatentCache c;
  c.key = key;
  c.scaling_factor = read_double_attribute(f, "scaling_factor", path);
  const std::vector<hsize_t> dims = dims_of(f, "mean", path), samples = dims_of(f, "samples", path);
  XLTUNE_CHECK(samples.size() == 1 && dims_of(f, "latent_sizes", path) == (std::vector<hsize_t>{samples[0], 2}),
               path, ": /samples and /latent_sizes do not agree");
  if (samples[0] != key.samples.size()) return stale("another number of samples");
  const size_t n = samples[0];
  std::vector<int64_t> ids = read_all<int64_t>(f, "samples", H5T_NATIVE_INT64, n, path);
  for (size_t i = 0; i < n; ++i)
    if (static_cast<uint64_t>(ids[i]) != key.samples[i]) return stale("other samples");
  c.channels = read_int_attribute(f, "channels", path);
  const std::vector<int32_t> sizes = read_all<int32_t>(f, "latent_sizes", H5T_NATIVE_INT32, 2 * n, path);
  for (size_t i = 0; i < n; ++i) c.heights.push_back(sizes[2 * i]), c.widths.push_back(sizes[2 * i + 1]);
  const size_t total = c.offsets().back();
  size_t stored = 1;
  for (hsize_t d : dims) stored *= d;
  XLTUNE_CHECK(c.channels > 0 && stored == total && dims_of(f, "logvar", path) == dims, path,
               ": /mean and /logvar do not hold the values /latent_sizes says");
  c.mean = read_all<float>(f, "mean", H5T_NATIVE_FLOAT, total, path);
  c.logvar = read_all<float>(f, "logvar", H5T_NATIVE_FLOAT, total, path);
  return c;
}

}  // namespace xltune
