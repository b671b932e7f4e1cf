#include "job/fault_hooks.h"

#include <cstdio>
#include <cstdlib>

#include "core/check.h"

namespace xltune {

bool fault_for_step(const char* variable, int64_t step, long long* bytes) {
  const char* spec = std::getenv(variable);
  if (spec == nullptr || *spec == '\0') return false;
  long long s = -1, b = 0;
  const int n = std::sscanf(spec, "%lld:%lld", &s, &b);
  if (bytes != nullptr) *bytes = b;
  return n >= 1 && s == step;
}

void maybe_inject_fault(int rank, int64_t step) {
  static const char* spec = std::getenv("XLTUNE_FAULT_RANK_STEP");
  if (spec == nullptr || *spec == '\0') return;
  int r = -1;
  long long s = -1;
  if (std::sscanf(spec, "%d:%lld", &r, &s) == 2 && r == rank && s == step)
    XLTUNE_FAIL("injected fault (XLTUNE_FAULT_RANK_STEP=", spec, ")");
}

}  // namespace xltune
