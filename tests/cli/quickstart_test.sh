#!/usr/bin/env bash
# launch/quickstart as a new user runs it (set-up skipped: this build is the set-up's), then its
# outputs: a complete tar, a loss curve that went down, a checkpoint half way, validation images
# and two generated images.
#   quickstart_test.sh REPO BUILD_DIR WORKDIR
set -u
repo=$1 build=$2 dir=$3
rm -rf "$dir" && mkdir -p "$dir"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
expect 0 "launch/quickstart" env XLTUNE_QUICKSTART_SKIP_SETUP=1 XLTUNE_QUICKSTART_DIR="$dir" XLTUNE_BUILD_DIR="$build" \
  "$repo/launch/quickstart"
has "$dir/out" "== quickstart: done"
has "$dir/out" "trained 400 steps on 6 images"
has "$dir/out" "400 steps, 2 rank(s)"
has "$dir/err" "BLIP captions from"
has "$dir/err" "CLIPSeg masks for 'a photo'"
out=$dir/training_out
for f in trained_model.tar loss.png metrics.jsonl run_config.json checkpoints/step-00000200/lora.safetensors \
         samples/step-000200.png samples/step-000400.png ../generated/out-0.png ../generated/grid.png; do
  [ -s "$out/$f" ] || { echo "FAIL: $out/$f missing"; fail=1; }; done
"$repo/.venv/bin/python" - "$out/metrics.jsonl" <<'PY' || fail=1
import json, sys
loss = [json.loads(l)["loss"] for l in open(sys.argv[1])]
first, last = sum(loss[:40]) / 40, sum(loss[-40:]) / 40
assert len(loss) == 400 and last < 0.9 * first, (first, last)
print(f"ok   the loss went down: {first:.3f} over the first 40 steps, {last:.3f} over the last 40")
PY
"$repo/.venv/bin/python" - "$out/shards" <<'PY' || fail=1
import glob, sys
import h5py
import numpy as np
with h5py.File(sorted(glob.glob(sys.argv[1] + "/shard-*.h5"))[0], "r") as f:
    caps = [c.decode() if isinstance(c, bytes) else str(c) for c in f["captions"][...]]
    # Aspect buckets (configs/quickstart.cfg): the square photos at 128x128, the 3:2 ones at 160x96.
    buckets = sorted(k[len("masks_"):] for k in f if k.startswith("masks_"))
    masks = np.concatenate([f["masks_" + b][...].ravel() for b in buckets])
assert buckets == ["128x128", "160x96"], buckets
assert all(c.startswith("a photo of <s0><s1>") for c in caps) and any(len(c) > 20 for c in caps), caps
assert masks.std() > 5, masks.std()
print(f"ok   the shards hold BLIP captions ({caps[0]!r}, ...) and CLIPSeg masks (std {masks.std():.1f}) "
      f"in the buckets {buckets}")
PY
exit $fail
