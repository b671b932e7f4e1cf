// HDF5 ids that close themselves, and the check macro for HDF5 calls (in the manner of llm.c's
// mpiCheck): a failed call becomes an xltune::Error naming the call, what xltune was doing
// (file, dataset), HDF5's own innermost message, and the xltune source line.
//
//   H5Id file = XLTUNE_H5_ID(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose, "open shard ", path);
//   XLTUNE_H5_CHECK(H5Dwrite(...), "write sample ", i, " to ", path);
//
// HDF5 prints its error stack to stderr by default; hdf5_init() turns that off (the message
// goes into the Error instead), and turns off HDF5 file locking, which fails on NFS and Lustre
// where a cluster's shards live.
#pragma once

#include <hdf5.h>

#include <mutex>
#include <string>

#include "core/error.h"

namespace xltune {

// Idempotent; every entry point of the shard code calls it.
void hdf5_init();

// The one lock around HDF5 calls made while other threads may make some (the batch reader's
// thread, a latent-cache writer): Debian's libhdf5 is not built thread-safe, and a lock per
// file would not protect the library's global state.
std::mutex& hdf5_mutex();

[[noreturn]] void raise_hdf5_error(const char* file, int line, const char* call, const std::string& context);

inline hid_t hdf5_checked_id(hid_t id, const char* file, int line, const char* call, const std::string& context) {
  if (id < 0) raise_hdf5_error(file, line, call, context);
  return id;
}

#define XLTUNE_H5_CHECK(call, ...)                                                            \
  do {                                                                                        \
    if ((call) < 0) ::xltune::raise_hdf5_error(__FILE__, __LINE__, #call, ::xltune::str(__VA_ARGS__)); \
  } while (0)

#define XLTUNE_H5_ID(call, closer, ...) \
  ::xltune::H5Id(::xltune::hdf5_checked_id((call), __FILE__, __LINE__, #call, ::xltune::str(__VA_ARGS__)), (closer))

// Owns one HDF5 id; closes it with the matching H5?close on destruction.
class H5Id {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Id() = default;
  H5Id(hid_t id, Closer close) : id_(id), close_(close) {}
  ~H5Id() { reset(); }
  H5Id(H5Id&& other) noexcept : id_(other.id_), close_(other.close_) { other.id_ = -1; }
  H5Id& operator=(H5Id&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = other.id_;
      close_ = other.close_;
      other.id_ = -1;
    }
    return *this;
  }
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now and reports a failure (a destructor cannot): H5Fclose is where buffered data
  // reaches the disk.
  void close(const std::string& context);
  void reset() {
    if (id_ >= 0 && close_ != nullptr) close_(id_);
    id_ = -1;
  }

 private:
  hid_t id_ = -1;
  Closer close_ = nullptr;
};

// A file-access property list with file locking off (where the library has the call).
H5Id file_access_without_locking();
// A variable-length UTF-8 string type (h5py reads it as str).
H5Id utf8_string_type();

// Scalar attributes on an object (a file's root group, a dataset). `context` names the file.
void write_attribute(hid_t object, const char* name, const std::string& value, const std::string& context);
void write_attribute(hid_t object, const char* name, int64_t value, const std::string& context);
std::string read_string_attribute(hid_t object, const char* name, const std::string& context);
int64_t read_int_attribute(hid_t object, const char* name, const std::string& context);

}  // namespace xltune
