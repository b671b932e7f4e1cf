#!/usr/bin/env bash
# xltune preprocess from the command line: a zip of the sample photos becomes a shard set that
# h5py reads; usage errors exit 2, bad input exits 1 with a message naming it.
#   preprocess_test.sh XLTUNE PYTHON WORKDIR
set -u
xltune=$1 py=$2 dir=$3
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rm -rf "$dir" && mkdir -p "$dir"
fail=0
expect() {  # expect STATUS DESCRIPTION COMMAND...
  local want=$1 what=$2; shift 2
  "$@" >"$dir/out" 2>"$dir/err"; local rc=$?
  if [ "$rc" -ne "$want" ]; then echo "FAIL $what: exit $rc, expected $want"; cat "$dir/out" "$dir/err"; fail=1; return 1; fi
  echo "ok   $what"
}
has() {  # has FILE TEXT
  grep -qF -- "$2" "$1" || { echo "FAIL: '$2' not in $1:"; cat "$1"; fail=1; }
}

"$py" - "$root/data/samples" "$dir" <<'PY' || exit 1
import io, os, sys, zipfile
from PIL import Image
samples, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(os.path.join(out, "photos.zip"), "w") as z:
    for name in ["astronaut", "chelsea", "coffee", "rocket"]:
        buf = io.BytesIO()
        Image.open(os.path.join(samples, name + ".png")).convert("RGB").save(buf, "JPEG", quality=90)
        z.writestr(f"photos/{name}.jpg", buf.getvalue())
    z.writestr("photos/captions.csv", "image_file,caption\nrocket.jpg,TOK on the launch pad\n")
    z.writestr("__MACOSX/photos/._rocket.jpg", b"junk")
with zipfile.ZipFile(os.path.join(out, "evil.zip"), "w") as z:
    z.writestr("../../evil.jpg", b"\xff\xd8\xff")
PY

expect 0 "preprocess --help" "$xltune" preprocess --help && has "$dir/out" "--use_face_detection_instead"
expect 2 "no --input_images" "$xltune" preprocess --output_dir "$dir/x" && has "$dir/err" "input_images"
expect 2 "bad --resolution" "$xltune" preprocess --input_images "$dir/photos.zip" --output_dir "$dir/x" --resolution 500 \
  && has "$dir/err" "--resolution: expected a multiple of 8"
expect 2 "bad boolean" "$xltune" preprocess --input_images "$dir/photos.zip" --output_dir "$dir/x" --crop_based_on_salience maybe \
  && has "$dir/err" "crop_based_on_salience"
expect 1 "missing input" "$xltune" preprocess --input_images "$dir/nope.zip" --output_dir "$dir/x" && has "$dir/err" "nope.zip: cannot access"
expect 1 "hostile archive" "$xltune" preprocess --input_images "$dir/evil.zip" --output_dir "$dir/x" && has "$dir/err" "has a '..' part"
[ -e "$dir/../evil.jpg" ] && { echo "FAIL: evil.jpg written outside"; fail=1; }
expect 1 "mask prompts without CLIPSeg" "$xltune" preprocess --input_images "$dir/photos.zip" --output_dir "$dir/x" \
  --mask_target_prompts "a dog" && has "$dir/err" "needs CLIPSeg masks"

expect 0 "preprocess the sample photos" "$xltune" preprocess --input_images "$dir/photos.zip" --output_dir "$dir/shards" \
  --resolution 128 --use_face_detection_instead true
has "$dir/out" "preprocessed 4 of 4 images"
has "$dir/out" "captions: csv 1 prefix 3"
has "$dir/out" "faces found in 1 images"
"$py" - "$dir/shards" <<'PY' || fail=1
import json, os, sys
import h5py
d = sys.argv[1]
index = json.load(open(os.path.join(d, "index.json")))
assert index["num_samples"] == 4 and index["resolution"] == 128, index
names = sorted(x for x in os.listdir(d))
assert names == ["contact_sheet.png", "index.json", "shard-00000.h5"], names
with h5py.File(os.path.join(d, "shard-00000.h5"), "r") as f:
    sources = list(f["source_names"].asstr()[...])
    captions = dict(zip(sources, f["captions"].asstr()[...]))
    assert f["images"].shape == (4, 128, 128, 3), f["images"].shape
assert captions["photos/rocket.jpg"] == "<s0><s1> on the launch pad", captions
assert captions["photos/astronaut.jpg"] == "a photo of <s0><s1>", captions
print("ok   shards read back with h5py")
PY
exit $fail
