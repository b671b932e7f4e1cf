// Versions of the libraries the data part was built with, for `xltune version`.
#pragma once

#include <string>

namespace xltune {

std::string opencv_version();
std::string libarchive_version();
std::string hdf5_version();

}  // namespace xltune
