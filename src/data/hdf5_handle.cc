#include "data/hdf5_handle.h"

#include <cstdlib>
#include <mutex>

#include "core/check.h"

namespace xltune {

namespace {
// The innermost (most specific) description on HDF5's error stack, e.g. "unable to open file:
// name = 'x.h5', errno = 2, error message = 'No such file or directory'".
herr_t keep_innermost(unsigned, const H5E_error2_t* error, void* out) {
  if (error->desc != nullptr && *error->desc != '\0') *static_cast<std::string*>(out) = error->desc;
  return 0;
}
}  // namespace

void hdf5_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Before the library opens any file; a value the user set wins. H5Pset_file_locking does
    // the same per file where the library has it (1.10.7+), see hdf5_shards.cc.
    ::setenv("HDF5_USE_FILE_LOCKING", "FALSE", 0);
    H5open();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  });
}

std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

void raise_hdf5_error(const char* file, int line, const char* call, const std::string& context) {
  std::string detail;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, keep_innermost, &detail);
  H5Eclear2(H5E_DEFAULT);
  std::string call_name(call);
  call_name = call_name.substr(0, call_name.find('('));
  raise_error(file, line, str("cannot ", context, " (HDF5 ", call_name, detail.empty() ? "" : ": " + detail, ")"));
}

void H5Id::close(const std::string& context) {
  if (id_ < 0) return;
  hid_t id = id_;
  id_ = -1;
  if (close_ != nullptr && close_(id) < 0) raise_hdf5_error(__FILE__, __LINE__, "H5close", context);
}

H5Id file_access_without_locking() {
  hdf5_init();
  H5Id fapl = XLTUNE_H5_ID(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "create a file-access property list");
#if H5_VERSION_GE(1, 10, 7)
  // use_file_locking = false, ignore_when_disabled = true
  XLTUNE_H5_CHECK(H5Pset_file_locking(fapl.get(), false, true), "turn off HDF5 file locking");
#endif
  return fapl;
}

H5Id utf8_string_type() {
  H5Id type = XLTUNE_H5_ID(H5Tcopy(H5T_C_S1), H5Tclose, "make a string type");
  XLTUNE_H5_CHECK(H5Tset_size(type.get(), H5T_VARIABLE), "make a string type");
  XLTUNE_H5_CHECK(H5Tset_cset(type.get(), H5T_CSET_UTF8), "make a string type");
  return type;
}

void write_attribute(hid_t object, const char* name, const std::string& value, const std::string& context) {
  H5Id type = utf8_string_type();
  H5Id space = XLTUNE_H5_ID(H5Screate(H5S_SCALAR), H5Sclose, "write attribute ", name, " in ", context);
  H5Id attr = XLTUNE_H5_ID(H5Acreate2(object, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                           "write attribute ", name, " in ", context);
  const char* data = value.c_str();
  XLTUNE_H5_CHECK(H5Awrite(attr.get(), type.get(), &data), "write attribute ", name, " in ", context);
}

void write_attribute(hid_t object, const char* name, int64_t value, const std::string& context) {
  H5Id space = XLTUNE_H5_ID(H5Screate(H5S_SCALAR), H5Sclose, "write attribute ", name, " in ", context);
  H5Id attr = XLTUNE_H5_ID(H5Acreate2(object, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                           "write attribute ", name, " in ", context);
  XLTUNE_H5_CHECK(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value), "write attribute ", name, " in ", context);
}

std::string read_string_attribute(hid_t object, const char* name, const std::string& context) {
  XLTUNE_CHECK(H5Aexists(object, name) > 0, context, ": attribute '", name, "' is missing");
  H5Id attr = XLTUNE_H5_ID(H5Aopen(object, name, H5P_DEFAULT), H5Aclose, "read attribute ", name, " of ", context);
  H5Id stored = XLTUNE_H5_ID(H5Aget_type(attr.get()), H5Tclose, "read attribute ", name, " of ", context);
  XLTUNE_CHECK(H5Tget_class(stored.get()) == H5T_STRING && H5Tis_variable_str(stored.get()) > 0, context,
               ": attribute '", name, "' is not a variable-length string");
  H5Id type = utf8_string_type();
  char* data = nullptr;
  XLTUNE_H5_CHECK(H5Aread(attr.get(), type.get(), &data), "read attribute ", name, " of ", context);
  std::string out = data != nullptr ? data : "";
  H5free_memory(data);
  return out;
}

int64_t read_int_attribute(hid_t object, const char* name, const std::string& context) {
  XLTUNE_CHECK(H5Aexists(object, name) > 0, context, ": attribute '", name, "' is missing");
  H5Id attr = XLTUNE_H5_ID(H5Aopen(object, name, H5P_DEFAULT), H5Aclose, "read attribute ", name, " of ", context);
  H5Id stored = XLTUNE_H5_ID(H5Aget_type(attr.get()), H5Tclose, "read attribute ", name, " of ", context);
  XLTUNE_CHECK(H5Tget_class(stored.get()) == H5T_INTEGER, context, ": attribute '", name, "' is not an integer");
  int64_t value = 0;
  XLTUNE_H5_CHECK(H5Aread(attr.get(), H5T_NATIVE_INT64, &value), "read attribute ", name, " of ", context);
  return value;
}

}  // namespace xltune
