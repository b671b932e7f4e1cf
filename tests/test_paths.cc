#include "test_paths.h"

namespace xltune::test_paths {

const char* source_dir() { return XLTUNE_SOURCE_DIR; }
const char* testdata_dir() { return XLTUNE_TESTDATA_DIR; }

}  // namespace xltune::test_paths
