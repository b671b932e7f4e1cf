#!/usr/bin/env bash
# xltune's training against diffusers + peft + transformers (tests/reference/train_parity.py):
# the same steps from the same dumped inputs must give the same per-step losses and final
# weights. Two runs on the tiny model:
#   lora: LoRA rank 4, alpha 8 + pivotal tuning, 10 steps (pivot after 5), linear schedule with 3
#         warmup steps, gradients clipped (max_grad_norm 0.05, below the norms that occur), face
#         masks (the astronaut's face weighs more in the loss)
#   full: full fine-tuning with gradient checkpointing, cosine schedule with warmup, min-SNR
#         weighting (gamma 5) and offset noise
# Leaves WORKDIR/lora (a trained run) for the interop tests (ctest fixture train_run).
#   train_parity_test.sh XLTUNE PYTHON WORKDIR MODEL
set -u
xltune=$1 py=$2 dir=$3 model=$4
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rm -rf "$dir" && mkdir -p "$dir"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$py" - "$root/data/samples" "$dir" <<'PY' || exit 1
import io, os, sys, zipfile
from PIL import Image
samples, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(os.path.join(out, "photos.zip"), "w") as z:
    for name in ["astronaut", "chelsea", "coffee", "rocket"]:
        buf = io.BytesIO()
        im = Image.open(os.path.join(samples, name + ".png")).convert("RGB")
        # The astronaut stays large enough for the face detector; the others are shrunk.
        (im if name == "astronaut" else im.resize((128, 96))).save(buf, "JPEG", quality=92)
        z.writestr(f"{name}.jpg", buf.getvalue())
PY
common=(--model "$model" --input_images "$dir/photos.zip" --resolution 64 --train_batch_size 2 --seed 11)
expect 0 "LoRA + pivotal tuning run with dumps" "$xltune" train "${common[@]}" --max_train_steps 10 --lora_rank 4 \
  --lora_alpha 8 --lr_scheduler linear --lr_warmup_steps 3 --lora_lr 1e-3 --ti_lr 2e-3 --max_grad_norm 0.05 \
  --use_face_detection_instead true --output_dir "$dir/lora" --dump_steps "$dir/lora_dump"
"$py" -c "
import json, sys
m = [json.loads(l) for l in open(sys.argv[1])]
assert sum(x['grad_norm'] > 0.05 for x in m) >= 5, [x['grad_norm'] for x in m]
print('ok   clipping is active in', sum(x['grad_norm'] > 0.05 for x in m), 'of', len(m), 'steps')" "$dir/lora/metrics.jsonl" || fail=1
"$py" -c "
import sys
from safetensors.torch import load_file
masks = [load_file(f'{sys.argv[1]}/step-{s:06d}.safetensors')['mask'] for s in range(1, 11)]
assert any(float(m.min()) < 0.5 for m in masks), 'the face masks must weigh some latents less'
print('ok   face masks reach the loss')" "$dir/lora_dump" || fail=1
expect 0 "diffusers + peft replay of the LoRA run" "$py" "$root/tests/reference/train_parity.py" "$model" "$dir/lora" "$dir/lora_dump"
cat "$dir/out" | tail -4

expect 0 "full fine-tuning run with dumps" "$xltune" train "${common[@]}" --max_train_steps 8 --is_lora false \
  --unet_learning_rate 2e-4 --ti_lr 1e-3 --lr_scheduler cosine --lr_warmup_steps 2 --gradient_checkpointing true \
  --snr_gamma 5 --noise_offset 0.05 --save_dtype fp32 --output_dir "$dir/full" --dump_steps "$dir/full_dump"
expect 0 "diffusers replay of the full fine-tuning run" "$py" "$root/tests/reference/train_parity.py" "$model" "$dir/full" "$dir/full_dump"
cat "$dir/out" | tail -4
exit $fail
