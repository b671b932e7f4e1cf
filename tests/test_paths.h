// Where the tests find the repository (its data/) and the files the Python reference scripts
// write (build/testdata). Defined in test_paths.cc alone: a path compiled into every test file
// would differ between clones, and ccache would then miss on all of them (CMakeLists.txt).
#pragma once

#include <string>

namespace xltune::test_paths {

const char* source_dir();
const char* testdata_dir();
// The tiny SDXL UNets and VAEs of tests/reference/make_sdxl_unets.py and make_sdxl_vaes.py.
inline std::string sdxl_reference_dir() { return std::string(testdata_dir()) + "/sdxl"; }

}  // namespace xltune::test_paths
