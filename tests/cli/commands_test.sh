#!/usr/bin/env bash
# The program's surface: --help, version, inspect (text and --json), exit codes for usage errors.
#   commands_test.sh XLTUNE WORKDIR        (XLTUNE_PYTHON: the venv's python, for JSON checks)
set -u
xltune=$1 dir=$2
py=${XLTUNE_PYTHON:-python3}
rm -rf "$dir" && mkdir -p "$dir"
fail=0
expect() {  # expect STATUS DESCRIPTION COMMAND...
  local want=$1 what=$2; shift 2
  "$@" >"$dir/out" 2>"$dir/err"; local rc=$?
  if [ "$rc" -ne "$want" ]; then echo "FAIL $what: exit $rc, expected $want"; cat "$dir/out" "$dir/err"; fail=1; return 1; fi
  echo "ok   $what"
}
expect 0 "xltune --help" "$xltune" --help && grep -q "inspect" "$dir/out" || fail=1
expect 2 "xltune with no command" "$xltune"
expect 2 "unknown command" "$xltune" frobnicate && grep -q "unknown command 'frobnicate'" "$dir/err" || fail=1
expect 0 "version" "$xltune" version && grep -q "^libtorch   2\." "$dir/out" || fail=1
grep -q "^MPI        compiled in" "$dir/out" || { echo "FAIL version does not report MPI"; fail=1; }
expect 0 "version --json" "$xltune" version --json
"$py" -c 'import json,sys; v=json.load(open(sys.argv[1])); assert v["libtorch"].startswith("2."), v' "$dir/out" || fail=1
expect 0 "inspect --help" "$xltune" inspect --help && grep -q "Usage: xltune inspect FILE" "$dir/out" || fail=1
expect 2 "inspect without a file" "$xltune" inspect && grep -q "usage error" "$dir/err" || fail=1
expect 2 "inspect with a bad option" "$xltune" inspect --frobnicate x && grep -q "frobnicate" "$dir/err" || fail=1
expect 1 "inspect a missing file" "$xltune" inspect "$dir/missing.safetensors" && grep -q "missing.safetensors" "$dir/err" || fail=1
expect 1 "inspect a folder that is no model" "$xltune" inspect "$dir" && grep -q "no component folders with a config.json" "$dir/err" || fail=1

"$py" - "$dir/model.safetensors" <<'PY' || fail=1
import sys, torch
from safetensors.torch import save_file
save_file({"down.weight": torch.zeros(4, 3), "down.bias": torch.zeros(4), "emb": torch.zeros(2, 5, dtype=torch.bfloat16)},
          sys.argv[1], metadata={"format": "pt", "author": "test"})
PY
expect 0 "inspect text" "$xltune" inspect "$dir/model.safetensors"
grep -q "total: 3 tensors, 26 parameters, 84 bytes" "$dir/out" || { echo "FAIL inspect totals"; cat "$dir/out"; fail=1; }
grep -q "down.weight .*F32 *\[4, 3\]  12" "$dir/out" || { echo "FAIL inspect row"; cat "$dir/out"; fail=1; }
expect 0 "inspect --json" "$xltune" inspect --json "$dir/model.safetensors"
"$py" - "$dir/out" <<'PY' || fail=1
import json, sys
v = json.load(open(sys.argv[1]))
assert v["total_parameters"] == 26 and v["total_tensors"] == 3, v
assert v["metadata"] == {"format": "pt", "author": "test"}, v["metadata"]
emb = [t for t in v["tensors"] if t["name"] == "emb"][0]
assert emb["dtype"] == "BF16" and emb["shape"] == [2, 5] and emb["bytes"] == 20, emb
assert v["parameters_by_dtype"] == {"BF16": 10, "F32": 16}, v["parameters_by_dtype"]
PY
exit $fail
