#!/usr/bin/env bash
# launch/convert-weights: a pickle-only CLIPSeg folder is refused by xltune with a message naming
# the script; converted, it gives the masks of the safetensors original; a pickle that would run
# code is refused (weights_only) and nothing is written for it.
#   convert_weights_test.sh REPO XLTUNE PYTHON WORKDIR
set -u
repo=$1 xltune=$2 py=$3 dir=$4
rm -rf "$dir" && mkdir -p "$dir"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
photo=$repo/data/samples/coffee.png
expect 0 "a tiny CLIPSeg" "$xltune" init-model --preset tiny-clipseg --out "$dir/st"
expect 0 "its mask" "$xltune" mask --clipseg_model "$dir/st" --prompt "a cup" "$photo" --out "$dir/st.png"
cp -r "$dir/st" "$dir/pickle"
"$py" - "$dir/pickle" <<'PY' || exit 1
import os, sys
import torch
from safetensors.torch import load_file
d = sys.argv[1]
torch.save(load_file(os.path.join(d, "model.safetensors")), os.path.join(d, "pytorch_model.bin"))
os.remove(os.path.join(d, "model.safetensors"))
PY
expect 1 "a pickle-only folder" "$xltune" mask --clipseg_model "$dir/pickle" --prompt "a cup" "$photo" --out "$dir/x.png" \
  && has "$dir/err" "launch/convert-weights"
expect 0 "launch/convert-weights" env XLTUNE_PYTHON="$py" "$repo/launch/convert-weights" "$dir/pickle"
has "$dir/out" "pytorch_model.bin -> $dir/pickle/model.safetensors"
expect 0 "the converted folder's mask" "$xltune" mask --clipseg_model "$dir/pickle" --prompt "a cup" "$photo" --out "$dir/pickle.png"
cmp -s "$dir/st.png" "$dir/pickle.png" && echo "ok   the same mask as the safetensors original" \
  || { echo "FAIL: the converted weights give another mask"; fail=1; }
expect 0 "converting again keeps the file" env XLTUNE_PYTHON="$py" "$repo/launch/convert-weights" "$dir/pickle"
has "$dir/out" "exists: kept"
mkdir -p "$dir/evil"
"$py" - "$dir/evil/pytorch_model.bin" "$dir/pwned" <<'PY' || exit 1
import os, pickle, sys
class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {sys.argv[2]}",))
with open(sys.argv[1], "wb") as f:
    pickle.dump({"w": Evil()}, f)
PY
expect 1 "a pickle that runs code" env XLTUNE_PYTHON="$py" "$repo/launch/convert-weights" "$dir/evil" \
  && has "$dir/err" "not loadable as plain tensors with weights_only=True"
lacks "$dir/pwned"
lacks "$dir/evil/model.safetensors"
exit $fail
