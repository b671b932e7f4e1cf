#!/usr/bin/env bash
# xltune generate on the tiny model: --help; what a training run hands over (trained_model.tar,
# the output folder, lora_kohya.safetensors, a full fine-tuning tar) loads and changes the image;
# bad input ends in one clear message (exit 2 for options, 1 for files); 2 MPI ranks make the
# images of one process.
#   generate_test.sh XLTUNE PYTHON WORKDIR MODEL
set -u
xltune=$1 py=$2 dir=$3 model=$4
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rm -rf "$dir" && mkdir -p "$dir"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
export OMPI_MCA_orte_tmpdir_base=$dir PRTE_MCA_prte_tmpdir_base=$dir TMPDIR=$dir
gen() {  # xltune generate on the tiny model: 64x64, 4 steps, seed 1 unless the arguments say otherwise
  local args=(--model "$model") d
  for d in "--width 64" "--height 64" "--num_inference_steps 4" "--seed 1"; do
    [[ " $* " == *" ${d%% *} "* ]] || args+=($d)
  done
  "$xltune" generate "${args[@]}" "$@"
}
pixels_equal() {  # pixels_equal DIR_A DIR_B FILES...: the same pixels (the parameters text may differ)
  "$py" - "$@" <<'PY'
import sys
import numpy as np
from PIL import Image
a, b, files = sys.argv[1], sys.argv[2], sys.argv[3:]
bad = [f for f in files if not np.array_equal(np.array(Image.open(f"{a}/{f}")), np.array(Image.open(f"{b}/{f}")))]
sys.exit(f"FAIL: {a} and {b}: other pixels in {bad}" if bad else 0)
PY
  [ $? = 0 ] || fail=1
}
same() {  # same DIR_A DIR_B FILES...: byte-identical files
  local a=$1 b=$2; shift 2
  for f in "$@"; do cmp -s "$a/$f" "$b/$f" || { echo "FAIL: $a/$f and $b/$f differ"; fail=1; return 1; }; done
}
differ() { cmp -s "$1" "$2" && { echo "FAIL: $1 and $2 are identical ($3)"; fail=1; return 1; }; echo "ok   $3"; }

expect 0 "generate --help" "$xltune" generate --help && has "$dir/out" "--scheduler" && has "$dir/out" "K_EULER_ANCESTRAL" \
  && has "$dir/out" "--lora_scale"
expect 0 "txt2img, 3 outputs" gen --prompt "a photo of TOK" --num_outputs 3 --out "$dir/base"
for f in out-0.png out-1.png out-2.png grid.png; do [ -s "$dir/base/$f" ] || { echo "FAIL: no $f"; fail=1; }; done
has "$dir/out" "made 3 images (seed 1)"
# --attention math (Note [Attention kernels]): the same images, to rounding (the kernels differ in
# their last bits), and the log names the kernel of each shape.
expect 0 "--attention math" gen --prompt "a photo of TOK" --num_outputs 1 --attention math --out "$dir/math"
has "$dir/err" "on cpu: math"
"$py" - "$dir/base/out-0.png" "$dir/math/out-0.png" <<'PY' && echo "ok   --attention math: the same image to rounding" || { echo "FAIL: --attention math gave another image"; fail=1; }
import sys
import numpy as np
from PIL import Image
a, b = (np.asarray(Image.open(p), dtype=np.int16) for p in sys.argv[1:3])
sys.exit(0 if np.abs(a - b).max() <= 2 else 1)
PY

# What training hands over: a LoRA + pivotal tuning run of 4 steps, and a full fine-tuning one.
"$py" - "$root/data/samples" "$dir" <<'PY' || exit 1
import io, os, sys, zipfile
from PIL import Image
samples, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(os.path.join(out, "photos.zip"), "w") as z:
    for name in sorted(os.listdir(samples))[:4]:
        buf = io.BytesIO()
        Image.open(os.path.join(samples, name)).convert("RGB").resize((80, 64)).save(buf, "PNG")
        z.writestr(name, buf.getvalue())
PY
train=(train --model "$model" --input_images "$dir/photos.zip" --resolution 64 --seed 2 --max_train_steps 4
       --lora_lr 1e-2 --ti_lr 1e-2 --lora_rank 4)
expect 0 "train a LoRA to generate with" "$xltune" "${train[@]}" --train_batch_size 2 --output_dir "$dir/trained"
expect 0 "--lora trained_model.tar" gen --prompt "a photo of TOK" --num_outputs 3 --lora "$dir/trained/trained_model.tar" \
  --out "$dir/tar"
has "$dir/err" "LoRA lora.safetensors (reference layout"
differ "$dir/base/out-0.png" "$dir/tar/out-0.png" "the tar changes the image"
expect 0 "--lora the output folder" gen --prompt "a photo of TOK" --num_outputs 3 --lora "$dir/trained" --out "$dir/folder"
pixels_equal "$dir/tar" "$dir/folder" out-0.png out-1.png out-2.png && echo "ok   the folder and its tar: identical images"
expect 0 "--lora lora_kohya.safetensors" gen --prompt "a photo of <s0><s1>" --lora "$dir/trained/lora_kohya.safetensors" \
  --out "$dir/kohya"
has "$dir/err" "kohya layout"
expect 0 "--lora_scale 0 with the tar" gen --prompt "a photo of TOK" --lora "$dir/trained/trained_model.tar" --lora_scale 0 \
  --out "$dir/scale0"
differ "$dir/tar/out-0.png" "$dir/scale0/out-0.png" "lora_scale 0 differs from 0.6"
expect 0 "train full fine-tuning to generate with" "$xltune" "${train[@]}" --train_batch_size 2 --is_lora false --unet_learning_rate 1e-3 \
  --output_dir "$dir/full"
expect 0 "--lora a full fine-tuning tar (unet.safetensors)" gen --prompt "a photo of TOK" --lora "$dir/full/trained_model.tar" \
  --out "$dir/fulltar"
differ "$dir/base/out-0.png" "$dir/fulltar/out-0.png" "the fine-tuned UNet changes the image"

# Many ranks: the outputs shared out, rank 0 writes them all; the same draws as one process,
# so the same images up to the batch size's effect on the kernels' summation order (each rank's
# UNet batch is smaller). Measured: latents within 2e-6 of their largest value, pixels 1 level.
close() {  # close DIR_A DIR_B N: latents within 2e-5 relative, pixels within 2 levels
  "$py" - "$@" <<'PY'
import sys
import numpy as np
from PIL import Image
from safetensors.torch import load_file
a, b, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
la, lb = load_file(a + "/latents.safetensors")["latents"], load_file(b + "/latents.safetensors")["latents"]
rel = ((la - lb).abs().max() / la.abs().max()).item()
px = max(int(np.abs(np.array(Image.open(f"{a}/out-{i}.png"), np.int32) - np.array(Image.open(f"{b}/out-{i}.png"), np.int32)).max())
         for i in range(n))
print(f"{'ok  ' if rel < 2e-5 and px <= 2 else 'FAIL:'} {a} vs {b}: latents {rel:.1e} of their largest value, pixels {px} levels")
sys.exit(0 if rel < 2e-5 and px <= 2 else 1)
PY
  [ $? = 0 ] || fail=1
}
if mpirun -np 2 --oversubscribe true >/dev/null 2>&1; then
  for s in K_EULER K_EULER_ANCESTRAL; do
    expect 0 "1 process, $s, 3 outputs" gen --seed 4 --prompt "a photo of TOK" --num_outputs 3 --scheduler $s \
      --lora "$dir/trained/trained_model.tar" --save_latents true --out "$dir/one_$s"
    expect 0 "2 ranks, $s, 3 outputs" mpirun -np 2 --oversubscribe "$xltune" generate --model "$model" --width 64 \
      --height 64 --num_inference_steps 4 --seed 4 --prompt "a photo of TOK" --num_outputs 3 --scheduler $s \
      --lora "$dir/trained/trained_model.tar" --save_latents true --out "$dir/ranks_$s"
    has "$dir/err" "[xltune r0 "
    close "$dir/one_$s" "$dir/ranks_$s" 3
  done
else
  echo "FAIL: mpirun -np 2 does not run here"; fail=1
fi

# Validation images while training: a grid per --validation_steps and at the end, the weights
# of a run without them, bit for bit; on 2 ranks the same grids.
val=(--validation_prompt "a photo of TOK" --validation_prompt "TOK on a beach" --validation_steps 2
     --validation_inference_steps 4 --num_validation_images 2)
expect 0 "train with validation images every 2 steps" "$xltune" "${train[@]}" "${val[@]}" --train_batch_size 2 --output_dir "$dir/val"
for s in 000002 000004; do [ -s "$dir/val/samples/step-$s.png" ] || { echo "FAIL: no samples/step-$s.png"; fail=1; }; done
has "$dir/err" "validation: $dir/val/samples/step-000004.png (2 prompts x 2 images"
cmp -s "$dir/trained/trained_model.tar" "$dir/val/trained_model.tar" \
  && echo "ok   with validation: the same trained_model.tar as without" || { echo "FAIL: validation changed the weights"; fail=1; }
"$py" - "$dir/val/samples/step-000004.png" "$dir/val/samples/step-000002.png" <<'PY' || fail=1
import sys
import numpy as np
from PIL import Image
a, b = Image.open(sys.argv[1]), Image.open(sys.argv[2])
assert a.size == (128, 128), a.size  # 2 prompts x 2 images of 64x64
assert a.info["parameters"].startswith("a photo of TOK\nTOK on a beach\nSteps: 4"), a.info["parameters"]
assert not np.array_equal(np.array(a), np.array(b)), "steps 2 and 4 rendered the same grid"
print("ok   the grid: 2 x 2 images, the prompts in its parameters, other weights other images")
PY
if mpirun -np 2 --oversubscribe true >/dev/null 2>&1; then
  expect 0 "train on 2 ranks with validation images" mpirun -np 2 --oversubscribe "$xltune" "${train[@]}" "${val[@]}" \
    --train_batch_size 1 --output_dir "$dir/val2"
  "$py" - "$dir/val/samples/step-000004.png" "$dir/val2/samples/step-000004.png" <<'PY' || fail=1
import sys
import numpy as np
from PIL import Image
a, b = (np.array(Image.open(p), np.int32) for p in sys.argv[1:3])
d = int(np.abs(a - b).max())
# 2 ranks x batch 1 trains the weights of 1 x 2 up to summation order; the grids follow.
print(f"{'ok  ' if d <= 3 else 'FAIL:'} 2 ranks: the validation grid of 1 process within {d} levels")
sys.exit(0 if d <= 3 else 1)
PY
fi
expect 2 "--validation_scheduler unknown" "$xltune" "${train[@]}" --validation_scheduler K_LMS --output_dir "$dir/x" \
  && has "$dir/err" "--validation_scheduler 'K_LMS'"
expect 2 "--num_validation_images 0" "$xltune" "${train[@]}" --num_validation_images 0 --output_dir "$dir/x" \
  && has "$dir/err" "--num_validation_images: expected 1 to 16"

# Bad input: one clear message each.
expect 2 "unknown scheduler" gen --scheduler K_LMS --out "$dir/x" && has "$dir/err" "--scheduler 'K_LMS': expected one of"
expect 2 "size not a multiple of 8" gen --width 60 --out "$dir/x" && has "$dir/err" "--width 60 and --height 64: expected multiples of 8"
expect 1 "a size this model's UNet cannot take" gen --width 72 --out "$dir/x" \
  && has "$dir/err" "--width 72 and --height 64: this model needs multiples of 16"
"$py" -c "from PIL import Image; Image.new('RGB', (77, 90), (9, 99, 199)).save('$dir/odd.png')"
expect 1 "img2img of an image whose size does not fit" gen --image "$dir/odd.png" --out "$dir/x" \
  && has "$dir/err" "img2img keeps the image's size (77x90, 72x88 at the VAE's factor 8)"
expect 2 "strength above 1" gen --image "$dir/base/out-0.png" --prompt_strength 1.5 --out "$dir/x" \
  && has "$dir/err" "--prompt_strength 1.5: expected a value from 0 to 1"
expect 1 "missing image" gen --image "$dir/nothing.png" --out "$dir/x" && has "$dir/err" "--image $dir/nothing.png: no such file"
expect 1 "mask without image" gen --mask "$dir/base/out-0.png" --out "$dir/x" && has "$dir/err" "--mask needs --image"
expect 1 "missing --lora" gen --lora "$dir/none.tar" --out "$dir/x" && has "$dir/err" "--lora $dir/none.tar: no such file"
"$py" - "$dir" <<'PY' || exit 1
import sys, tarfile, io
import torch
from safetensors.torch import save_file, load_file
d = sys.argv[1]
lora = load_file(d + "/trained/lora.safetensors")
k = next(k for k in lora if k.endswith("attn1.processor.to_q_lora.down.weight"))
lora[k] = torch.zeros(4, 7)  # a LoRA for a model with other widths
save_file(lora, d + "/wrong_shape.safetensors")
save_file({"mid_block.attentions.9.transformer_blocks.0.attn1.processor.to_q_lora.down.weight": torch.zeros(4, 64),
           "mid_block.attentions.9.transformer_blocks.0.attn1.processor.to_q_lora.up.weight": torch.zeros(64, 4)},
          d + "/other_model.safetensors")
with tarfile.open(d + "/empty.tar", "w") as t:
    info = tarfile.TarInfo("readme.txt"); data = b"nothing"; info.size = len(data); t.addfile(info, io.BytesIO(data))
open(d + "/garbage.tar", "wb").write(b"\0\1\2 this is not a tar archive" * 40)
PY
expect 1 "a LoRA of other widths" gen --lora "$dir/wrong_shape.safetensors" --out "$dir/x" && has "$dir/err" "to_q" \
  && has "$dir/err" "[4, 7]"
expect 1 "a LoRA of another model" gen --lora "$dir/other_model.safetensors" --out "$dir/x" \
  && has "$dir/err" "mid_block.attentions.9"
expect 1 "a tar without weights" gen --lora "$dir/empty.tar" --out "$dir/x" \
  && has "$dir/err" "has neither lora.safetensors nor unet.safetensors"
expect 1 "a file that is not a tar" gen --lora "$dir/garbage.tar" --out "$dir/x" && has "$dir/err" "garbage.tar"
lacks "$dir/x/out-0.png"
exit $fail
