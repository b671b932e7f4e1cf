#!/usr/bin/env bash
# xltune train from the command line, on the tiny model: each seed input does what the seed
# says (schedules and warmup, precedence of the step counts and the exact stop, seed, is_lora,
# the three learning rates, rank, checkpointing_steps, token_string with its prefix), the
# outputs are complete and byte-identical for the same seed, --config and --shards work,
# `xltune export` rebuilds the tar, and bad options end in one line naming the option.
#   train_test.sh XLTUNE PYTHON WORKDIR MODEL
set -u
xltune=$1 py=$2 dir=$3 model=$4
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rm -rf "$dir" && mkdir -p "$dir"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export XLTUNE_LOG_LEVEL=info

"$py" - "$root/data/samples" "$dir" <<'PY' || exit 1
import io, os, sys, zipfile
from PIL import Image
samples, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(os.path.join(out, "photos.zip"), "w") as z:
    for name in ["astronaut", "chelsea", "coffee", "rocket"]:
        buf = io.BytesIO()
        Image.open(os.path.join(samples, name + ".png")).convert("RGB").resize((96, 72)).save(buf, "JPEG", quality=90)
        z.writestr(f"photos/{name}.jpg", buf.getvalue())
with zipfile.ZipFile(os.path.join(out, "empty.zip"), "w") as z:
    z.writestr("notes.txt", "no images here")
PY
# Every run: the tiny model, 4 photos at 64 px, batch 2 (2 steps per epoch).
train() { "$xltune" train --model "$model" --input_images "$dir/photos.zip" --resolution 64 --train_batch_size 2 "$@"; }
metrics() {  # metrics RUN_DIR PYTHON_EXPRESSION: asserts the expression over m (list of metrics lines)
  "$py" -c "import json,sys; m=[json.loads(l) for l in open(sys.argv[1]+'/metrics.jsonl')]; c=json.load(open(sys.argv[1]+'/run_config.json')); assert $2, (m[:3], c['resolved'])" "$1" \
    || { echo "FAIL: $2 ($1)"; fail=1; }
}

expect 0 "train --help" "$xltune" train --help
for o in input_images seed resolution train_batch_size num_train_epochs max_train_steps is_lora unet_learning_rate \
  ti_lr lora_lr lr_scheduler lr_warmup_steps token_string caption_prefix mask_target_prompts crop_based_on_salience \
  use_face_detection_instead clipseg_temperature verbose checkpointing_steps model output_dir lora_rank lora_alpha \
  shards config gradient_checkpointing dump_steps report_to deterministic cuda_graph lora_product_dtype; do
  has "$dir/out" "--$o"; done

# A LoRA run with the defaults except the step count: outputs, defaults recorded, progress.
expect 0 "LoRA run" train --seed 1 --max_train_steps 5 --output_dir "$dir/a"
has "$dir/out" "trained 5 steps on 4 images"
has "$dir/err" "step 1/5"
has "$dir/err" "step 5/5"
tar tf "$dir/a/trained_model.tar" > "$dir/members"
for f in lora.safetensors embeddings.pti special_params.json lora_kohya.safetensors embeddings_sdxl.safetensors; do
  has "$dir/members" "$f"; done
for f in run_config.json metrics.jsonl loss.png trainer_state.safetensors shards/index.json latents/latents-r00000.h5; do
  [ -s "$dir/a/$f" ] || { echo "FAIL: $dir/a/$f missing"; fail=1; }; done
metrics "$dir/a" "len(m) == 5 and [x['step'] for x in m] == [1,2,3,4,5]"
metrics "$dir/a" "c['options']['checkpointing_steps'] == 200 and c['options']['lr_warmup_steps'] == 100 and c['options']['train_batch_size'] == 2 and c['options']['caption_prefix'] == 'a photo of TOK' and c['options']['num_train_epochs'] == 4000 and c['options']['unet_learning_rate'] == 1e-6"
metrics "$dir/a" "c['resolved']['pivot_step'] == 2 and c['resolved']['lora_alpha'] == 32 and c['resolved']['steps_from'] == 'max_train_steps'"
metrics "$dir/a" "[(g['name'], g['lr'], g['weight_decay'], g['betas'], g['eps']) for g in c['optimizer']['groups']] == [('lora', 1e-4, 1e-4, [0.9, 0.999], 1e-8), ('text_embeddings', 3e-4, 1e-3, [0.9, 0.999], 1e-8)]"
metrics "$dir/a" "all(set(x) >= {'loss', 'lr', 'grad_norm', 'samples_per_s', 'peak_memory_bytes'} for x in m)"
"$py" -c "
import sys; from PIL import Image; im = Image.open(sys.argv[1]); assert im.size == (900, 520), im.size" "$dir/a/loss.png" \
  || { echo "FAIL: loss.png"; fail=1; }

# --report_to tensorboard: OUTPUT_DIR/logs as the tensorboard package reads it, every step's loss,
# learning rates, grad norm and samples/s equal to metrics.jsonl's (float32) and each validation
# grid's PNG; the default writes none, and a run that starts over removes the earlier events.
lacks "$dir/a/logs"
expect 0 "--report_to tensorboard" train --seed 1 --max_train_steps 3 --report_to tensorboard --output_dir "$dir/tb" \
  --validation_prompt "a photo of TOK" --validation_steps 2 --validation_inference_steps 2 --num_validation_images 1
"$py" "$root/tests/job/check_tensorboard_events.py" run "$dir/tb" || { echo "FAIL: TensorBoard events of $dir/tb"; fail=1; }
expect 0 "a run that starts over where one reported to TensorBoard" train --seed 1 --max_train_steps 1 --resume none \
  --output_dir "$dir/tb"
lacks "$dir/tb/logs"

# Same seed: the same bytes in every member; another seed: other weights.
expect 0 "the same run again" train --seed 1 --max_train_steps 5 --output_dir "$dir/b"
cmp -s "$dir/a/trained_model.tar" "$dir/b/trained_model.tar" && echo "ok   same seed, identical trained_model.tar" \
  || { echo "FAIL: same seed gave another tar"; fail=1; }
# --deterministic true (Note [Deterministic mode]): the tiny model trains under it, twice to the
# same bytes, and run_config.json and the summary line say so; the default run says it is off.
expect 0 "--deterministic true" train --seed 1 --max_train_steps 3 --deterministic true --output_dir "$dir/det"
has "$dir/err" "VAE fp32, deterministic"
metrics "$dir/det" "c['resolved']['deterministic'] is True and c['resolved']['cudnn_benchmark'] is False and c['options']['deterministic'] is True"
metrics "$dir/a" "c['resolved']['deterministic'] is False and c['options']['deterministic'] is False"
expect 0 "--deterministic true again" train --seed 1 --max_train_steps 3 --deterministic true --output_dir "$dir/det2"
cmp -s "$dir/det/trainer_state.safetensors" "$dir/det2/trainer_state.safetensors" \
  && echo "ok   --deterministic true: the same run again, identical trainer_state.safetensors" \
  || { echo "FAIL: --deterministic true gave another trainer state"; fail=1; }
# --attention (Note [Attention kernels]): auto logs each shape's kernel once (flash on the CPU);
# math forced trains and says so; a kernel the CPU lacks is one error naming the option and shape.
has "$dir/err" "fp32 grad on cpu: flash"
expect 0 "--attention math" train --seed 1 --max_train_steps 2 --attention math --output_dir "$dir/attn"
has "$dir/err" "VAE fp32, attention math" && has "$dir/err" "fp32 grad on cpu: math"
metrics "$dir/attn" "c['resolved']['attention'] == 'math' and c['options']['attention'] == 'math'"
expect 1 "--attention efficient on the CPU" train --seed 1 --max_train_steps 2 --attention efficient \
  --output_dir "$dir/attn2" && has "$dir/err" "--attention efficient: no enabled attention kernel runs ["
expect 2 "--attention unknown" train --attention fastest --output_dir "$dir/x" \
  && has "$dir/err" "expected auto, flash, efficient, cudnn, math"
# --lora_fused_projections (Note [LoRA's shared down-projection]): auto is off on the CPU; on trains
# the same run to rounding and says so in run_config.json.
metrics "$dir/attn" "c['resolved']['lora_fused_projections'] is False"
expect 0 "--lora_fused_projections on" train --seed 1 --max_train_steps 2 --lora_fused_projections on \
  --output_dir "$dir/fused"
metrics "$dir/fused" "c['resolved']['lora_fused_projections'] is True and c['options']['lora_fused_projections'] == 'on'"
expect 2 "--lora_fused_projections unknown" train --lora_fused_projections maybe --output_dir "$dir/x" \
  && has "$dir/err" "lora_fused_projections"
# --lora_product_dtype (Note [LoRA's product in bf16]): auto is fp32 on the CPU; bf16 trains and says so.
metrics "$dir/attn" "c['resolved']['lora_product_dtype'] == 'fp32'"
expect 0 "--lora_product_dtype bf16" train --seed 1 --max_train_steps 2 --lora_product_dtype bf16 --output_dir "$dir/bf16"
metrics "$dir/bf16" "c['resolved']['lora_product_dtype'] == 'bf16' and c['options']['lora_product_dtype'] == 'bf16'"
expect 2 "--lora_product_dtype fp16" train --lora_product_dtype fp16 --output_dir "$dir/x" && has "$dir/err" "lora_product_dtype"
# --cuda_graph (Note [The step as a CUDA graph]): off by default, recorded; on the CPU one error
# naming the option, before any model is loaded.
metrics "$dir/attn" "c['resolved']['cuda_graph'] is False and c['resolved']['step_graph'] == 'off' and c['options']['cuda_graph'] == 'false'"
expect 1 "--cuda_graph true on the CPU" train --seed 1 --max_train_steps 2 --cuda_graph true --output_dir "$dir/graph" \
  && has "$dir/err" "--cuda_graph true needs a CUDA device; this run trains on cpu" \
  && { grep -q "loading the UNet" "$dir/err" && { echo "FAIL: the model was loaded first"; fail=1; } || true; }
expect 2 "--cuda_graph unknown" train --cuda_graph maybe --output_dir "$dir/x" && has "$dir/err" "--cuda_graph 'maybe': expected false, true, static"
# --cuda_graph static: the captured step's plumbing, run eagerly, trains bit for bit as the eager
# step through the job (checkpoints, the EMA and validation images between steps, aspect buckets:
# the square and 3:2 sample photos at 128 px alternate after the pivot, each shape warmed up,
# captured and replayed).
"$py" - "$root/data/samples" "$dir/buckets.zip" <<'PY' || exit 1
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[2], "w") as z:
    for name in sorted(os.listdir(sys.argv[1])):
        z.write(os.path.join(sys.argv[1], name), name)
PY
graph_run=(train --model "$model" --input_images "$dir/buckets.zip" --resolution 128 --aspect_buckets true --bucket_step 32
           --train_batch_size 2 --max_train_steps 16 --seed 0 --lora_rank 4 --adamw_kernel fused --checkpointing_steps 4
           --use_ema true --validation_prompt "a photo of TOK" --validation_steps 6 --num_validation_images 1
           --validation_inference_steps 2)
expect 0 "16 bucketed steps, eager" "$xltune" "${graph_run[@]}" --output_dir "$dir/graph_off"
expect 0 "16 bucketed steps, --cuda_graph static" "$xltune" "${graph_run[@]}" --cuda_graph static --output_dir "$dir/graph_static" \
  && has "$dir/out" "--cuda_graph static: 8 steps from static inputs: 2 captures, 2 replays"
metrics "$dir/graph_static" "c['resolved']['step_graph'] == 'static' and c['resolved']['cuda_graph'] is False"
cmp -s "$dir/graph_off/trained_model.tar" "$dir/graph_static/trained_model.tar" \
  && echo "ok   --cuda_graph static = eager, the tar byte for byte" || { echo "FAIL: --cuda_graph static changed the tar"; fail=1; }
# With gradient accumulation: each micro-batch's static step, then the update's (a graph each on a GPU).
accumulated=(train --model "$model" --input_images "$dir/photos.zip" --resolution 64 --train_batch_size 1
             --gradient_accumulation_steps 2 --seed 3 --max_train_steps 8 --adamw_kernel fused)
expect 0 "2 micro-batches a step, eager" "$xltune" "${accumulated[@]}" --output_dir "$dir/accum_off"
expect 0 "2 micro-batches a step, --cuda_graph static" "$xltune" "${accumulated[@]}" --cuda_graph static \
  --output_dir "$dir/accum_static" && has "$dir/out" "--cuda_graph static: 4 steps from static inputs: 1 captures, 1 replays"
cmp -s "$dir/accum_off/trained_model.tar" "$dir/accum_static/trained_model.tar" \
  && echo "ok   micro-batches: --cuda_graph static = eager, the tar byte for byte" \
  || { echo "FAIL: micro-batches: --cuda_graph static changed the tar"; fail=1; }
expect 2 "--deterministic not a boolean" train --deterministic sometimes --output_dir "$dir/x" && has "$dir/err" "deterministic"
expect 0 "another seed" train --seed 2 --max_train_steps 5 --output_dir "$dir/c"
cmp -s "$dir/a/lora.safetensors" "$dir/c/lora.safetensors" && { echo "FAIL: seed 2 = seed 1"; fail=1; } || echo "ok   another seed, other weights"
expect 0 "--verbose false: no progress, the summary only" env -u XLTUNE_LOG_LEVEL "$xltune" train --model "$model" \
  --input_images "$dir/photos.zip" --resolution 64 --train_batch_size 2 --seed 1 --max_train_steps 2 --verbose false \
  --output_dir "$dir/q"
grep -q "step 1/2\|preprocessed" "$dir/err" && { echo "FAIL: --verbose false still prints progress"; fail=1; }
has "$dir/out" "trained 2 steps"
expect 0 "no seed: a random one, printed" train --max_train_steps 1 --output_dir "$dir/r" && has "$dir/err" "(random; pass --seed"

# The step counts: max_train_steps wins; epochs count when it is not given; the run stops exactly.
expect 0 "max_train_steps over num_train_epochs" train --seed 1 --max_train_steps 3 --num_train_epochs 100 --output_dir "$dir/s1"
metrics "$dir/s1" "len(m) == 3 and c['resolved']['steps_from'] == 'max_train_steps'"
expect 0 "num_train_epochs alone" train --seed 1 --num_train_epochs 3 --output_dir "$dir/s2"
metrics "$dir/s2" "len(m) == 6 and c['resolved']['steps_from'] == 'num_train_epochs' and [x['epoch'] for x in m] == [0,0,1,1,2,2]"

# Schedules and warmup, as the learning rates each step used (pivot at 3 of 6: rows stop then).
expect 0 "linear with warmup" train --seed 1 --max_train_steps 6 --lr_scheduler linear --lr_warmup_steps 2 \
  --lora_lr 1e-3 --ti_lr 2e-3 --output_dir "$dir/l"
metrics "$dir/l" "[round(x['lr']['lora'] / 1e-3, 6) for x in m] == [0, 0.5, 1, 0.75, 0.5, 0.25]"
metrics "$dir/l" "[round(x['lr']['text_embeddings'] / 2e-3, 6) for x in m] == [0, 0.5, 1, 0, 0, 0]"
expect 0 "cosine with warmup" train --seed 1 --max_train_steps 6 --lr_scheduler cosine --lr_warmup_steps 2 \
  --lora_lr 1e-3 --output_dir "$dir/cos"
metrics "$dir/cos" "[round(x['lr']['lora'] / 1e-3, 6) for x in m] == [0, 0.5, 1, 0.853553, 0.5, 0.146447]"
expect 0 "constant_with_warmup" train --seed 1 --max_train_steps 4 --lr_scheduler constant_with_warmup \
  --lr_warmup_steps 2 --lora_lr 1e-3 --output_dir "$dir/cw"
metrics "$dir/cw" "[round(x['lr']['lora'] / 1e-3, 6) for x in m] == [0, 0.5, 1, 1]"
expect 0 "constant ignores warmup, and says so" train --seed 1 --max_train_steps 2 --lr_warmup_steps 5 --output_dir "$dir/co"
has "$dir/err" "constant has no warmup"
metrics "$dir/co" "[x['lr']['lora'] for x in m] == [1e-4, 1e-4]"

# Full fine-tuning: the UNet trains at unet_learning_rate; unet.safetensors instead of LoRA.
expect 0 "full fine-tuning" train --seed 1 --max_train_steps 3 --is_lora false --unet_learning_rate 5e-5 \
  --gradient_checkpointing true --output_dir "$dir/f"
tar tf "$dir/f/trained_model.tar" > "$dir/members_f"
has "$dir/members_f" "unet.safetensors"
grep -q "lora" "$dir/members_f" && { echo "FAIL: full fine-tuning tar has LoRA files"; fail=1; }
metrics "$dir/f" "c['optimizer']['groups'][0]['name'] == 'unet' and c['optimizer']['groups'][0]['lr'] == 5e-5 and m[0]['lr']['unet'] == 5e-5"
"$py" - "$model" "$dir/f/unet.safetensors" <<'PY' || fail=1
import sys
from safetensors.torch import load_file
base = load_file(sys.argv[1] + "/unet/diffusion_pytorch_model.safetensors")
tuned = load_file(sys.argv[2])
assert set(base) == set(tuned), "unet.safetensors must hold every UNet tensor"
changed = [k for k in base if not (base[k].to(tuned[k].dtype) == tuned[k]).all()]
frozen = [k for k in changed if ".norm" in k and k.endswith(".weight") or "time" in k]
assert len(changed) > len(base) // 2 and not frozen, (len(changed), frozen[:3])
print(f"ok   full fine-tuning changed {len(changed)} of {len(base)} UNet tensors (norm weights and time layers kept)")
PY

# Rank and alpha: shapes, the kohya alpha, the reference layout's folded scale.
expect 0 "rank 8, alpha 4" train --seed 1 --max_train_steps 2 --lora_rank 8 --lora_alpha 4 --output_dir "$dir/k"
"$py" - "$dir/k" <<'PY' || fail=1
import sys
from safetensors.torch import load_file
ref, kohya = load_file(sys.argv[1] + "/lora.safetensors"), load_file(sys.argv[1] + "/lora_kohya.safetensors")
k = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora"
kk = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
assert ref[k + ".down.weight"].shape == (8, 64), ref[k + ".down.weight"].shape  # to_k of attn2 reads the 64-wide text
assert float(kohya[kk + ".alpha"]) == 4.0
assert (ref[k + ".up.weight"] - kohya[kk + ".lora_up.weight"] * 0.5).abs().max() == 0
print("ok   rank 8: A is [8, in]; alpha 4 in the kohya file; up * alpha/rank in the reference layout")
PY

# checkpointing_steps: every 2 steps of 5, and the last step (what a run with more steps resumes
# from); --checkpoints_total_limit 0 keeps them all.
expect 0 "checkpoints every 2 steps" train --seed 1 --max_train_steps 5 --checkpointing_steps 2 --checkpoints_total_limit 0 --output_dir "$dir/ck"
for s in 00000002 00000004 00000005; do [ -s "$dir/ck/checkpoints/step-$s/lora.safetensors" ] && [ -s "$dir/ck/checkpoints/step-$s/trainer_state.safetensors" ] \
  || { echo "FAIL: no checkpoint at step $s"; fail=1; }; done
[ "$(cat "$dir/ck/checkpoints/latest")" = step-00000005 ] && echo "ok   latest names step 5" \
  || { echo "FAIL: latest is '$(cat "$dir/ck/checkpoints/latest")'"; fail=1; }
ls -a "$dir/ck/checkpoints" | grep -q partial && { echo "FAIL: a partial checkpoint is left"; fail=1; }

# --mask_target_prompts with a CLIPSeg model: the loss is weighted by its masks (other weights
# than uniform masks give).
expect 0 "a tiny CLIPSeg" "$xltune" init-model --preset tiny-clipseg --out "$dir/clipseg"
expect 0 "train with CLIPSeg masks" train --seed 1 --max_train_steps 2 --mask_target_prompts "a photo" \
  --clipseg_model "$dir/clipseg" --output_dir "$dir/masked"
has "$dir/err" "CLIPSeg masks for 'a photo' from $dir/clipseg"
expect 0 "the same run with uniform masks" train --seed 1 --max_train_steps 2 --output_dir "$dir/unmasked"
cmp -s "$dir/masked/lora.safetensors" "$dir/unmasked/lora.safetensors" \
  && { echo "FAIL: CLIPSeg masks changed nothing"; fail=1; } || echo "ok   CLIPSeg masks change the training"

# token_string with its own prefix.
expect 0 "token_string sks" train --seed 1 --max_train_steps 1 --token_string sks --caption_prefix "a photo of sks" --output_dir "$dir/t"
[ "$(cat "$dir/t/special_params.json")" = '{"sks":"<s0><s1>"}' ] && echo "ok   special_params.json maps sks" \
  || { echo "FAIL: special_params.json: $(cat "$dir/t/special_params.json")"; fail=1; }
"$py" -c "
import h5py,sys; f=h5py.File(sys.argv[1]); assert set(f['captions'].asstr()[...]) == {'a photo of <s0><s1>'}" \
  "$dir/t/shards/shard-00000.h5" || { echo "FAIL: captions of the sks run"; fail=1; }

# --config: the file's values apply, the command line wins.
printf 'max_train_steps = 3\nlora_rank = 2\n# a comment\nlora_lr = 2e-4\n' > "$dir/run.cfg"
expect 0 "--config" train --seed 1 --config "$dir/run.cfg" --lora_rank 4 --output_dir "$dir/cfg"
metrics "$dir/cfg" "len(m) == 3 and c['options']['lora_rank'] == 4 and c['options']['lora_lr'] == 2e-4"
# Every shipped config parses and trains (sizes overridden for the tiny model; the full
# fine-tuning ones exercise bf16 AdamW state with stochastic rounding).
for cfg in "$root"/configs/*.cfg; do
  expect 0 "configs/$(basename "$cfg")" "$xltune" train --config "$cfg" --model "$model" --input_images "$dir/photos.zip" \
    --resolution 64 --train_batch_size 2 --max_train_steps 2 --seed 1 --output_dir "$dir/cfg_$(basename "$cfg" .cfg)"
done
metrics "$dir/cfg_a40-full-1024" "c['optimizer']['state_dtype'] == 'bf16' and c['options']['is_lora'] is False"
printf 'lora_rnak = 2\n' > "$dir/bad.cfg"
expect 2 "--config with an unknown option" train --config "$dir/bad.cfg" --output_dir "$dir/x" && has "$dir/err" "lora_rnak"

# A single-file checkpoint of the same model trains to the same bytes as its folder: configs from
# --model_config (unet, vae, both encoders; no tokenizers there, so the CLIP vocabulary is used).
"$py" "$root/tests/reference/make_single_file_model.py" "$model" "$dir/single.safetensors" >/dev/null || fail=1
for c in unet vae text_encoder text_encoder_2; do mkdir -p "$dir/configs/$c" && cp "$model/$c/config.json" "$dir/configs/$c/"; done
expect 0 "single-file --model" "$xltune" train --model "$dir/single.safetensors" --model_config "$dir/configs" \
  --input_images "$dir/photos.zip" --resolution 64 --train_batch_size 2 --seed 1 --max_train_steps 5 --output_dir "$dir/sf"
cmp -s "$dir/sf/lora.safetensors" "$dir/a/lora.safetensors" && echo "ok   single file and folder train to identical weights" \
  || { echo "FAIL: the single file trained to other weights"; fail=1; }

# --shards: an earlier preprocess output; its resolution is the run's.
expect 0 "preprocess" "$xltune" preprocess --input_images "$dir/photos.zip" --output_dir "$dir/shards" --resolution 64
expect 0 "train on --shards" "$xltune" train --model "$model" --shards "$dir/shards" --seed 1 --max_train_steps 2 \
  --train_batch_size 2 --output_dir "$dir/sh"
metrics "$dir/sh" "c['resolved']['resolution'] == 64"
expect 1 "--shards with another --resolution" "$xltune" train --model "$model" --shards "$dir/shards" --resolution 128 \
  --output_dir "$dir/x" && has "$dir/err" "were made at 64"

# xltune export rebuilds the same files from the trainer state.
expect 0 "export" "$xltune" export --state "$dir/a/trainer_state.safetensors" --out "$dir/e"
for f in lora.safetensors embeddings.pti special_params.json lora_kohya.safetensors embeddings_sdxl.safetensors; do
  cmp -s "$dir/a/$f" "$dir/e/$f" || { echo "FAIL: export made another $f"; fail=1; }; done
cmp -s "$dir/a/trained_model.tar" "$dir/e/trained_model.tar" && echo "ok   export rebuilds the identical tar" || { echo "FAIL: export tar"; fail=1; }
expect 0 "export of full fine-tuning" "$xltune" export --state "$dir/f/trainer_state.safetensors" --out "$dir/ef"
cmp -s "$dir/f/unet.safetensors" "$dir/ef/unet.safetensors" || { echo "FAIL: export made another unet.safetensors"; fail=1; }

# Bad options: one line naming the option, exit 2 (usage) or 1 (the input).
expect 2 "unknown scheduler" train --lr_scheduler polynomial --output_dir "$dir/x" && has "$dir/err" "--lr_scheduler 'polynomial': expected constant"
raw() { "$xltune" train --model "$model" --input_images "$dir/photos.zip" "$@"; }
expect 2 "resolution not a multiple of 8" raw --resolution 500 --output_dir "$dir/x" && has "$dir/err" "--resolution: expected a multiple of 8"
expect 1 "resolution too coarse for the model" raw --resolution 72 --output_dir "$dir/x" && has "$dir/err" "--resolution 72: this model needs a multiple of 16"
expect 2 "caption prefix without the token" train --caption_prefix "a photo of a dog" --output_dir "$dir/x" \
  && has "$dir/err" "--caption_prefix 'a photo of a dog' must contain --token_string 'TOK'"
expect 2 "zero learning rate" train --lora_lr 0 --output_dir "$dir/x" && has "$dir/err" "--lora_lr: expected a positive learning rate, got 0"
expect 2 "negative learning rate" train --ti_lr -1e-4 --output_dir "$dir/x" && has "$dir/err" "--ti_lr: expected a positive learning rate"
expect 2 "zero steps" train --max_train_steps 0 --output_dir "$dir/x" && has "$dir/err" "--max_train_steps: expected a positive number"
expect 2 "negative epochs" train --num_train_epochs -2 --output_dir "$dir/x" && has "$dir/err" "--num_train_epochs"
expect 2 "zero batch" train --train_batch_size 0 --output_dir "$dir/x" && has "$dir/err" "--train_batch_size"
expect 2 "bad boolean" train --is_lora maybe --output_dir "$dir/x" && has "$dir/err" "is_lora"
expect 2 "unknown option" train --lora_rnak 4 --output_dir "$dir/x" && has "$dir/err" "lora_rnak"
expect 2 "no --model" "$xltune" train --input_images "$dir/photos.zip" --output_dir "$dir/x" && has "$dir/err" "--model: expected"
expect 1 "missing model" "$xltune" train --model "$dir/nomodel" --input_images "$dir/photos.zip" --output_dir "$dir/x" \
  && has "$dir/err" "--model $dir/nomodel: no such file or folder"
cp -r "$model" "$dir/broken" && rm "$dir/broken/unet/diffusion_pytorch_model.safetensors" && rm -r "$dir/broken/tokenizer_2"
expect 1 "incomplete model folder" "$xltune" train --model "$dir/broken" --input_images "$dir/photos.zip" --output_dir "$dir/x" \
  && has "$dir/err" "not a complete diffusers SDXL folder: unet/ has no weights" && has "$dir/err" "tokenizer_2/vocab.json"
# Into the folder of an earlier run: with --resume auto its checkpoint is not these images, and
# that is refused before anything is touched; started over, the run fails on the empty archive.
expect 1 "other images than the checkpoint's" "$xltune" train --model "$model" --input_images "$dir/empty.zip" --output_dir "$dir/a" \
  && has "$dir/err" "not the images the checkpoint in $dir/a/checkpoints/step-"
[ -s "$dir/a/trained_model.tar" ] && echo "ok   a refused resume leaves the earlier run as it was" \
  || { echo "FAIL: a refused resume removed $dir/a/trained_model.tar"; fail=1; }
expect 1 "zero images" "$xltune" train --model "$model" --input_images "$dir/empty.zip" --output_dir "$dir/a" --resume none \
  && has "$dir/err" "no images found"
lacks "$dir/a/trained_model.tar"
lacks "$dir/a/lora.safetensors"
echo "ok   a failed run into an old output folder leaves nothing that looks complete"
exit $fail
