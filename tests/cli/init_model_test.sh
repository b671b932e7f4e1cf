#!/usr/bin/env bash
# xltune init-model: same options, same bytes; the folder loads in diffusers and transformers
# and runs; --from-config; bad options. Leaves WORKDIR/model (the tiny preset, seed 0) for the
# training tests (ctest fixture tiny_model).
#   init_model_test.sh XLTUNE PYTHON WORKDIR
set -u
xltune=$1 py=$2 dir=$3
rm -rf "$dir" && mkdir -p "$dir"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

expect 0 "init-model --help" "$xltune" init-model --help && has "$dir/out" "--preset"
expect 2 "unknown preset" "$xltune" init-model --preset huge --out "$dir/x" && has "$dir/err" "--preset 'huge': expected tiny, small, tiny-clipseg, tiny-blip or tiny-swin2sr"
expect 2 "no --out" "$xltune" init-model --preset tiny && has "$dir/err" "--out"
expect 2 "both --preset and --from-config" "$xltune" init-model --preset tiny --from-config "$dir" --out "$dir/x"
expect 0 "tiny, seed 0" "$xltune" init-model --preset tiny --out "$dir/a" && has "$dir/out" "parameters"
expect 0 "tiny, seed 0 again" "$xltune" init-model --preset tiny --out "$dir/b"
diff -r "$dir/a" "$dir/b" >/dev/null && echo "ok   same seed, same bytes" || { echo "FAIL: two tiny models differ"; fail=1; }
expect 0 "tiny, seed 1" "$xltune" init-model --preset tiny --seed 1 --out "$dir/c"
cmp -s "$dir/a/unet/diffusion_pytorch_model.safetensors" "$dir/c/unet/diffusion_pytorch_model.safetensors" \
  && { echo "FAIL: seed 1 gave the weights of seed 0"; fail=1; } || echo "ok   another seed, other weights"
for p in tiny-clipseg tiny-blip tiny-swin2sr; do  # the preprocessing presets: same seed, same bytes
  expect 0 "$p" "$xltune" init-model --preset $p --out "$dir/$p-a" && has "$dir/out" "parameters"
  expect 0 "$p again" "$xltune" init-model --preset $p --out "$dir/$p-b"
  diff -r "$dir/$p-a" "$dir/$p-b" >/dev/null && echo "ok   $p: same seed, same bytes" || { echo "FAIL: two $p differ"; fail=1; }
done
expect 0 "--from-config" "$xltune" init-model --from-config "$dir/a" --out "$dir/d"
diff -r "$dir/a" "$dir/d" >/dev/null && echo "ok   --from-config of the tiny configs = the tiny preset" \
  || { echo "FAIL: --from-config differs"; fail=1; }
expect 1 "--from-config of a folder without configs" "$xltune" init-model --from-config "$dir/nothing" --out "$dir/e" \
  && has "$dir/err" "nothing/unet/config.json"

"$py" - "$dir/a" <<'PY' || fail=1
import sys, warnings
import torch
from diffusers import StableDiffusionXLPipeline
warnings.filterwarnings("ignore")
pipe = StableDiffusionXLPipeline.from_pretrained(sys.argv[1])
assert len(pipe.tokenizer) == 49408 and len(pipe.tokenizer_2) == 49408
assert pipe.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
assert pipe.tokenizer_2.pad_token_id == 0 and pipe.tokenizer.pad_token_id == 49407
out = pipe("a photo of a cat", num_inference_steps=2, height=128, width=128, output_type="np",
           generator=torch.Generator().manual_seed(0)).images
assert out.shape == (1, 128, 128, 3), out.shape
print("ok   diffusers loads the tiny model and generates with it")
PY
mv "$dir/a" "$dir/model"
exit $fail
