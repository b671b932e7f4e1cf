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
expect 0 "mask prompts without CLIPSeg: uniform masks, said once" "$xltune" preprocess --input_images "$dir/photos.zip" \
  --output_dir "$dir/x" --resolution 64 --mask_target_prompts "a dog" && has "$dir/err" "no CLIPSeg model (give --clipseg_model DIR"
[ "$(grep -c "no CLIPSeg model" "$dir/err")" = 1 ] || { echo "FAIL: the fallback was not said exactly once"; fail=1; }
expect 1 "a --clipseg_model that is not there" "$xltune" preprocess --input_images "$dir/photos.zip" --output_dir "$dir/x" \
  --resolution 64 --mask_target_prompts "a dog" --clipseg_model "$dir/no_clipseg" && has "$dir/err" "no_clipseg: no such folder"

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

# CLIPSeg masks: a tiny random CLIPSeg (init-model --preset tiny-clipseg) that transformers loads;
# `xltune mask` gives the reference's recipe run by transformers within 1 level; preprocessing
# with it writes those masks into the shards (and --preprocess_models finds the folder).
expect 0 "init-model --preset tiny-clipseg" "$xltune" init-model --preset tiny-clipseg --out "$dir/models/clipseg-rd64-refined"
expect 0 "xltune mask" "$xltune" mask --clipseg_model "$dir/models/clipseg-rd64-refined" --prompt "a rocket" \
  "$root/data/samples/rocket.png" --out "$dir/rocket_mask.png" --clipseg_temperature 0.7
expect 2 "xltune mask without --prompt" "$xltune" mask --clipseg_model "$dir/models/clipseg-rd64-refined" \
  "$root/data/samples/rocket.png" --out "$dir/x.png" && has "$dir/err" "--prompt"
expect 0 "preprocess with CLIPSeg masks" "$xltune" preprocess --input_images "$dir/photos.zip" --output_dir "$dir/clipseg_shards" \
  --resolution 64 --mask_target_prompts "a rocket" --clipseg_temperature 0.7 --crop_based_on_salience false \
  --preprocess_models "$dir/models"
has "$dir/err" "masks: prompt"
"$py" - "$dir" "$root/data/samples/rocket.png" <<'PY' || fail=1
import os, sys
import h5py
import numpy as np
import torch
from PIL import Image
from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor
d, photo = sys.argv[1], sys.argv[2]
model_dir = os.path.join(d, "models", "clipseg-rd64-refined")
model = CLIPSegForImageSegmentation.from_pretrained(model_dir).eval()
proc = CLIPSegProcessor.from_pretrained(model_dir)
image = Image.open(photo).convert("RGB")
inputs = proc(text=["a rocket", ""], images=[image] * 2, padding="max_length", return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits
p = torch.softmax(logits / 0.7, dim=0)[0]
p = (p + 0.01).clamp_(0, 1)
p = 255 * p / p.max()
ref = np.array(Image.fromarray(p.numpy()).convert("L").resize(image.size), np.int32)
ours = np.array(Image.open(os.path.join(d, "rocket_mask.png")), np.int32)
diff = np.abs(ours - ref)
assert ours.shape == ref.shape and diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())
print(f"ok   xltune mask = the reference's recipe in transformers (largest difference {diff.max()} level, "
      f"{(diff > 0).mean():.2%} of pixels); values {ours.min()}..{ours.max()}")
with h5py.File(os.path.join(d, "clipseg_shards", "shard-00000.h5"), "r") as f:
    masks = f["masks"][...]
assert masks.shape[0] == 4 and masks.std() > 5, (masks.shape, masks.std())
print(f"ok   the shards hold CLIPSeg masks (std {masks.std():.1f} over 4 images, not uniform)")
PY
exit $fail
