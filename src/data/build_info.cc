#include "data/build_info.h"

#include <archive.h>
#include <hdf5.h>

#include <opencv2/core/version.hpp>

namespace xltune {

std::string opencv_version() { return CV_VERSION; }

std::string libarchive_version() { return archive_version_details(); }

std::string hdf5_version() {
  unsigned major = 0, minor = 0, release = 0;
  if (H5get_libversion(&major, &minor, &release) < 0) return "unknown";
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(release);
}

}  // namespace xltune
