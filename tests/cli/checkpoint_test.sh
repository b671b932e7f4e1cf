#!/usr/bin/env bash
# Checkpoints and exact resume (Note [Checkpoints]) on the tiny model, 1 and 2 ranks:
#   - 20 steps straight = interrupted and resumed: bit-identical weights and the same losses, for
#     LoRA + pivotal tuning (resumed before the pivot, and after it) and full fine-tuning;
#   - SIGTERM: a checkpoint of the current step, exit 75, and an identical resume;
#   - SIGKILL of a rank at a random moment, 10 times, some of them inside a checkpoint write: each
#     time the next run resumes from the last complete checkpoint and ends bit-identical;
#   - corrupt, truncated and manifest-less checkpoints skipped with a message; a full disk during
#     a checkpoint keeps the previous one and ends the run with a clear message;
#   - a resume whose options change the run's meaning is refused, naming the option;
#   - a run checkpointed on 2 ranks resumes on 1, and on 1 resumes on 2, for LoRA and for full
#     fine-tuning with its optimizer state sharded over the ranks (ZeRO-1);
#   - with --use_ema (full fine-tuning, ZeRO-1): exact on 2 ranks, the same training on 1.
#   checkpoint_test.sh XLTUNE PYTHON WORKDIR MODEL
set -u
xltune=$1 py=$2 dir=$3 model=$4
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rm -rf "$dir" && mkdir -p "$dir"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 TMPDIR=$dir
export OMPI_MCA_orte_tmpdir_base=$dir PRTE_MCA_prte_tmpdir_base=$dir

"$py" - "$root/data/samples" "$dir" <<'PY' || exit 1
import io, os, sys, zipfile
from PIL import Image
with zipfile.ZipFile(os.path.join(sys.argv[2], "photos.zip"), "w") as z:
    for name in sorted(os.listdir(sys.argv[1])):
        buf = io.BytesIO()
        Image.open(os.path.join(sys.argv[1], name)).convert("RGB").resize((96, 72)).save(buf, "JPEG", quality=90)
        z.writestr(name.replace(".png", ".jpg"), buf.getvalue())
PY
lora=(--model "$model" --input_images "$dir/photos.zip" --resolution 64 --seed 7 --max_train_steps 20 --lora_rank 4
      --lora_lr 1e-3 --ti_lr 1e-3 --lr_scheduler cosine --lr_warmup_steps 3 --checkpointing_steps 2 --log_every 100
      --checkpoints_total_limit 3)
full=(--model "$model" --input_images "$dir/photos.zip" --resolution 64 --seed 7 --max_train_steps 20 --is_lora false
      --unet_learning_rate 1e-4 --ti_lr 1e-3 --checkpointing_steps 2 --log_every 100 --save_dtype fp32)
same() {  # same WHAT RUN_A RUN_B: bit-identical trainable weights and identical losses
  if cmp -s "$2/trainer_state.safetensors" "$3/trainer_state.safetensors" &&
     "$py" -c "import json,sys; a,b=[[json.loads(l)['loss'] for l in open(p+'/metrics.jsonl')] for p in sys.argv[1:]]; sys.exit(0 if a==b and len(a)==20 else 1)" "$2" "$3"; then
    echo "ok   $1: bit-identical weights, identical losses"
  else echo "FAIL $1: the resumed run differs"; fail=1; fi
}
close() {  # close WHAT RUN_A RUN_B: the same training up to reduction order (another world size)
  expect 0 "$1" "$py" "$root/tests/reference/compare_runs.py" "$2" "$3" && tail -n 2 "$dir/out"
}
# One rank and two, as commands (env and expect run them).
printf '#!/usr/bin/env bash\nexec "%s" train "$@"\n' "$xltune" > "$dir/run1"
printf '#!/usr/bin/env bash\nexec mpirun -np 2 --oversubscribe "%s" train "$@"\n' "$xltune" > "$dir/run2"
chmod +x "$dir/run1" "$dir/run2"
PATH=$dir:$PATH

# "${lora[@]}" with one option's value replaced (options may not be given twice).
with() {
  local opt=$1 val=$2 skip=0; shift 2
  out=()
  for a in "$@"; do
    if [ $skip = 1 ]; then skip=0; continue; fi
    if [ "$a" = "$opt" ]; then skip=1; continue; fi
    out+=("$a")
  done
  out+=("$opt" "$val")
}

# The uninterrupted runs.
expect 0 "LoRA + PTI, 1 rank, 20 steps straight" run1 "${lora[@]}" --train_batch_size 4 --output_dir "$dir/l1"
expect 0 "LoRA + PTI, 2 ranks, 20 steps straight" run2 "${lora[@]}" --train_batch_size 2 --output_dir "$dir/l2"
expect 0 "full FT, 1 rank, 20 steps straight" run1 "${full[@]}" --train_batch_size 4 --output_dir "$dir/f1"
expect 0 "full FT, 2 ranks, 20 steps straight" run2 "${full[@]}" --train_batch_size 2 --output_dir "$dir/f2"

# Stopped after step k (a raising rank at k+1; the checkpoint of k is the last), then resumed.
for spec in "1 l lora 6" "1 l lora 14" "1 f full 10" "2 l lora 6" "2 l lora 14" "2 f full 10"; do
  set -- $spec
  n=$1 kind=$2 name=$3 k=$4
  args="${name}[@]"
  batch=$((4 / n))
  out="$dir/r$n$kind$k"
  expect 1 "$name, $n rank(s): stopped at step $((k + 1))" env XLTUNE_FAULT_RANK_STEP=$((n - 1)):$((k + 1)) "run$n" \
    "${!args}" --train_batch_size $batch --output_dir "$out"
  expect 0 "$name, $n rank(s): resumed from step $k" run$n "${!args}" --train_batch_size $batch --output_dir "$out"
  has "$dir/err" "resumed from $out/checkpoints/step-$(printf %08d "$k")"
  same "$name, $n rank(s), resumed at $k ($([ "$k" -lt 10 ] && echo before || echo after) the pivot at 10)" \
    "$dir/$kind$n" "$out"
done

# SIGTERM: a checkpoint of the step it lands in, exit 75, and an identical resume.
with --checkpointing_steps 100000 "${lora[@]}"
term=("${out[@]}")
run1 "${term[@]}" --train_batch_size 4 --output_dir "$dir/term" >"$dir/term.out" 2>"$dir/term.err" &
pid=$!
for _ in $(seq 1 500); do [ -s "$dir/term/metrics.jsonl" ] && [ "$(wc -l < "$dir/term/metrics.jsonl")" -ge 3 ] && break; sleep 0.01; done
kill -TERM "$pid"; rc=0; wait "$pid" || rc=$?
[ "$rc" = 75 ] && echo "ok   SIGTERM: exit 75 (requeue)" || { echo "FAIL: SIGTERM gave exit $rc"; tail -n 5 "$dir/term.err"; fail=1; }
last=$(wc -l < "$dir/term/metrics.jsonl")
[ "$(cat "$dir/term/checkpoints/latest" 2>/dev/null)" = "step-$(printf %08d "$last")" ] \
  && echo "ok   SIGTERM: a checkpoint of step $last, the last step trained" || { echo "FAIL: no checkpoint of step $last"; fail=1; }
lacks "$dir/term/trained_model.tar"
expect 0 "resumed after SIGTERM" run1 "${term[@]}" --train_batch_size 4 --output_dir "$dir/term"
same "SIGTERM at step $last, then resumed" "$dir/l1" "$dir/term"

# SIGKILL at random moments, 10 times (every third inside a checkpoint write on purpose). The
# moments come from a printed seed (XLTUNE_KILL_SEED repeats them), and each kill must have
# happened: a run that ended before its kill proves nothing, and fails.
kill_seed=${XLTUNE_KILL_SEED:-$(( $(date +%s%N) % 32768 ))}
RANDOM=$kill_seed
echo "     SIGKILL moments from seed $kill_seed (XLTUNE_KILL_SEED=$kill_seed repeats them)"
cp -r "$dir/l2" "$dir/reference_l2"
for i in $(seq 1 10); do
  out="$dir/kill$i"
  victim_rank=$((RANDOM % 2))
  if [ $((i % 3)) = 0 ]; then
    killed=0
    env XLTUNE_FAULT_KILL_IN_CHECKPOINT=$((2 * (RANDOM % 9 + 1))) run2 "${lora[@]}" --train_batch_size 2 --output_dir "$out" \
      >/dev/null 2>&1 || killed=1
    how="inside the checkpoint write"
  else
    run2 "${lora[@]}" --train_batch_size 2 --output_dir "$out" >/dev/null 2>&1 &
    launcher=$!
    target=$((RANDOM % 12 + 1))  # somewhere in the first 12 of 20 steps (the rest: time to kill)
    for _ in $(seq 1 400); do
      [ -s "$out/metrics.jsonl" ] && [ "$(wc -l < "$out/metrics.jsonl")" -ge "$target" ] && break; sleep 0.02
    done
    killed=0
    for p in $(pgrep -f -- "--output_dir $out"); do
      [ "$p" != "$launcher" ] && grep -qz "^OMPI_COMM_WORLD_RANK=$victim_rank$" "/proc/$p/environ" 2>/dev/null \
        && kill -9 "$p" 2>/dev/null && killed=1
    done
    wait "$launcher" 2>/dev/null
    how="rank $victim_rank after step $target"
  fi
  if [ "$killed" = 0 ] || [ -e "$out/trained_model.tar" ]; then
    echo "FAIL SIGKILL $i ($how, seed $kill_seed): the run was not killed (it ended first?)"; fail=1; continue
  fi
  ckpt=$(cat "$out/checkpoints/latest" 2>/dev/null || echo none)
  if run2 "${lora[@]}" --train_batch_size 2 --output_dir "$out" >"$dir/out" 2>"$dir/err" \
     && cmp -s "$out/trainer_state.safetensors" "$dir/reference_l2/trainer_state.safetensors"; then
    echo "ok   SIGKILL $i ($how; resumed from $ckpt): bit-identical"
  else echo "FAIL SIGKILL $i ($how; resumed from $ckpt) differs"; tail -n 5 "$dir/err"; fail=1; fi
done

# Broken checkpoints: skipped, with a message, for the previous one.
cp -r "$dir/r1l6" "$dir/broken"  # complete run: checkpoints 16, 18, 20 kept
ck=$dir/broken/checkpoints
printf 'x' | dd of="$ck/step-00000020/trainer.safetensors" bs=1 seek=200 conv=notrunc 2>/dev/null
truncate -s -100 "$ck/step-00000018/trainer_state.safetensors"
expect 0 "corrupt latest and truncated previous: resumes from step 16" run1 "${lora[@]}" --train_batch_size 4 --output_dir "$dir/broken"
has "$dir/err" "step-00000020 cannot be used: trainer.safetensors does not match its checksum (corrupted)"
has "$dir/err" "trainer_state.safetensors has"
has "$dir/err" "resumed from $ck/step-00000016"
same "resumed past two broken checkpoints" "$dir/l1" "$dir/broken"
cp -r "$dir/r1l14" "$dir/nomanifest"
rm "$dir/nomanifest/checkpoints/step-00000020/manifest.json"
expect 0 "a checkpoint without its manifest is not one" run1 "${lora[@]}" --train_batch_size 4 --output_dir "$dir/nomanifest"
has "$dir/err" "names step-00000020, which has no manifest"
same "resumed from the one before the manifest-less" "$dir/l1" "$dir/nomanifest"

# A full disk in the checkpoint of step 8: the one of step 6 stays, the run says why.
expect 1 "disk full while writing the checkpoint of step 8" env XLTUNE_FAULT_CHECKPOINT=8:20000 run1 "${lora[@]}" \
  --train_batch_size 4 --output_dir "$dir/full_disk"
has "$dir/err" "checkpoint at step 8 not written"
has "$dir/err" "No space left on device"
[ "$(cat "$dir/full_disk/checkpoints/latest")" = "step-00000006" ] && echo "ok   latest still names step 6" \
  || { echo "FAIL: latest is $(cat "$dir/full_disk/checkpoints/latest")"; fail=1; }
expect 0 "and the next run resumes from step 6" run1 "${lora[@]}" --train_batch_size 4 --output_dir "$dir/full_disk"
same "after the full disk" "$dir/l1" "$dir/full_disk"

# Options that change what the run means: refused, naming the option; nothing lost.
with --lora_lr 2e-3 "${lora[@]}"
expect 1 "resume with another --lora_lr" run1 "${out[@]}" --train_batch_size 4 --output_dir "$dir/l1"
has "$dir/err" "--lora_lr 0.002: the checkpoint in $dir/l1/checkpoints/step-00000020 was made with 0.001"
[ -s "$dir/l1/trained_model.tar" ] && [ -s "$dir/l1/metrics.jsonl" ] && echo "ok   the refused resume lost nothing" \
  || { echo "FAIL: the refused resume removed outputs"; fail=1; }
# The images are known by their bytes: a copy elsewhere (another path, another time) resumes; an
# archive with other bytes under the same name is refused, and loses nothing.
cp -r "$dir/r1l14" "$dir/moved" && mkdir -p "$dir/elsewhere" && cp "$dir/photos.zip" "$dir/elsewhere/photos.zip"
with --input_images "$dir/elsewhere/photos.zip" "${lora[@]}"
moved=("${out[@]}")
with --max_train_steps 22 "${moved[@]}"
expect 0 "resume with the images copied to another path" run1 "${out[@]}" --train_batch_size 4 --output_dir "$dir/moved"
has "$dir/err" "resumed from $dir/moved/checkpoints/step-00000020"
printf 'x' >> "$dir/elsewhere/photos.zip"
with --max_train_steps 24 "${moved[@]}"
expect 1 "resume with other bytes in the archive" run1 "${out[@]}" --train_batch_size 4 --output_dir "$dir/moved"
has "$dir/err" "not the images the checkpoint in $dir/moved/checkpoints/step-00000022 was trained on"
[ "$(wc -l < "$dir/moved/metrics.jsonl")" = 22 ] && echo "ok   the refused resume lost nothing" || { echo "FAIL: lost"; fail=1; }
with --max_train_steps 24 "${lora[@]}"
expect 0 "--max_train_steps raised: trains further" run1 "${out[@]}" --train_batch_size 4 --output_dir "$dir/r1l14"
[ "$(wc -l < "$dir/r1l14/metrics.jsonl")" = 24 ] && echo "ok   24 steps after the raise" || { echo "FAIL: raise"; fail=1; }

# Another world size: 2 ranks -> 1 and 1 -> 2 (the same global batch of 4).
expect 1 "2 ranks, stopped at step 15" env XLTUNE_FAULT_RANK_STEP=1:15 run2 "${lora[@]}" --train_batch_size 2 --output_dir "$dir/w21"
expect 0 "checkpointed on 2 ranks, resumed on 1" run1 "${lora[@]}" --train_batch_size 4 --output_dir "$dir/w21"
has "$dir/err" "resumed from $dir/w21/checkpoints/step-00000014"
close "2 ranks -> 1 rank = uninterrupted" "$dir/l2" "$dir/w21"
expect 1 "1 rank, stopped at step 7" env XLTUNE_FAULT_RANK_STEP=0:7 run1 "${lora[@]}" --train_batch_size 4 --output_dir "$dir/w12"
expect 0 "checkpointed on 1 rank, resumed on 2" run2 "${lora[@]}" --train_batch_size 2 --output_dir "$dir/w12"
has "$dir/err" "resumed from $dir/w12/checkpoints/step-00000006"
close "1 rank -> 2 ranks = uninterrupted" "$dir/l1" "$dir/w12"

# Full fine-tuning on 2 ranks shards the optimizer state (ZeRO-1): one file per rank in the
# checkpoint, listed in the manifest, holding the moments of every UNet tensor but the replicated
# stem's (Note [Replicated stem under ZeRO-1]), which the shared file holds; it resumes on 1 rank
# (the shards joined) and a 1-rank checkpoint resumes on 2 (split), as the uninterrupted runs.
"$py" - "$dir/f2/checkpoints/step-00000020" <<'PY' || fail=1
import json, os, struct, sys
d = sys.argv[1]
files = {f["name"] for f in json.load(open(os.path.join(d, "manifest.json")))["files"]}
assert {"optimizer-r00000.safetensors", "optimizer-r00001.safetensors"} <= files, files
def header(name):
    with open(os.path.join(d, name), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))
keys = header("trainer.safetensors")
layout = json.loads(header("optimizer-r00000.safetensors")["__metadata__"]["zero_layout"])
sharded = {name for bucket in layout["buckets"] for name, _ in bucket}
replicated = {k[:-len(".exp_avg")] for k in keys if k.startswith("unet.") and k.endswith(".exp_avg")}
weights = {k for k in keys if k.startswith("unet.") and k.endswith((".weight", ".bias"))}
assert replicated and sharded and not replicated & sharded, (len(replicated), len(sharded))
assert replicated | sharded == weights, "UNet tensors with moments in neither file: %s" % sorted(weights - replicated - sharded)[:3]
print(f"ok   2-rank full FT checkpoint: one optimizer shard per rank, in the manifest; {len(sharded)} UNet tensors "
      f"sharded, {len(replicated)} replicated (the stem) in the shared file")
PY
expect 1 "full FT, 2 ranks (ZeRO-1), stopped at step 15" env XLTUNE_FAULT_RANK_STEP=1:15 run2 "${full[@]}" \
  --train_batch_size 2 --output_dir "$dir/fz21"
expect 0 "ZeRO-1 shards of 2 ranks, resumed on 1" run1 "${full[@]}" --train_batch_size 4 --output_dir "$dir/fz21"
has "$dir/err" "resumed from $dir/fz21/checkpoints/step-00000014"
close "full FT, 2 ranks (sharded) -> 1 rank = uninterrupted" "$dir/f2" "$dir/fz21"
expect 1 "full FT, 1 rank, stopped at step 7" env XLTUNE_FAULT_RANK_STEP=0:7 run1 "${full[@]}" --train_batch_size 4 \
  --output_dir "$dir/fz12"
expect 0 "a 1-rank checkpoint resumed on 2 ranks (ZeRO-1)" run2 "${full[@]}" --train_batch_size 2 --output_dir "$dir/fz12"
has "$dir/err" "resumed from $dir/fz12/checkpoints/step-00000006"
close "full FT, 1 rank -> 2 ranks (sharded) = uninterrupted" "$dir/f1" "$dir/fz12"

# --use_ema (Note [EMA of the trained weights]) with full fine-tuning sharded over 2 ranks: the
# average is in trainer.safetensors beside the weights (the UNet's tensors live in ZeRO-1's
# buckets), so a resume on 2 ranks is bit-identical and one on 1 rank the same training; a resume
# that turns the EMA off is refused, naming the options.
expect 0 "full FT + EMA, 2 ranks (ZeRO-1), 20 steps straight" run2 "${full[@]}" --use_ema true --train_batch_size 2 \
  --output_dir "$dir/fe2"
"$py" - "$dir/fe2/checkpoints/step-00000020/trainer.safetensors" <<'PY' || fail=1
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    keys = set(json.loads(f.read(n))) - {"__metadata__"}
unet = {k for k in keys if k.startswith("unet.") and "." + k.rsplit(".", 1)[-1] not in (".exp_avg", ".exp_avg_sq", ".adamw_step")}
assert unet and all("ema." + k in keys for k in unet), "a trained UNet tensor without its average"
assert not [k for k in keys if k.startswith("ema.text_encoders")], "the token rows have no average"
print(f"ok   full FT + EMA checkpoint: the average of all {len(unet)} trained UNet tensors, not of the rows")
PY
expect 1 "full FT + EMA, 2 ranks, stopped at step 11" env XLTUNE_FAULT_RANK_STEP=1:11 run2 "${full[@]}" --use_ema true \
  --train_batch_size 2 --output_dir "$dir/fe22"
cp -r "$dir/fe22" "$dir/fe21"
expect 0 "full FT + EMA, resumed on 2 ranks" run2 "${full[@]}" --use_ema true --train_batch_size 2 --output_dir "$dir/fe22"
has "$dir/err" "resumed from $dir/fe22/checkpoints/step-00000010"
same "full FT + EMA, 2 ranks, resumed at 10" "$dir/fe2" "$dir/fe22"
expect 0 "full FT + EMA, the 2-rank checkpoint resumed on 1" run1 "${full[@]}" --use_ema true --train_batch_size 4 \
  --output_dir "$dir/fe21"
close "full FT + EMA, 2 ranks (sharded) -> 1 rank = uninterrupted" "$dir/fe2" "$dir/fe21"
expect 1 "resume without --use_ema" run1 "${full[@]}" --train_batch_size 4 --output_dir "$dir/fe2"
has "$dir/err" "--use_ema/--ema_decay (false, or the EMA's decay) false: the checkpoint in $dir/fe2/checkpoints/step-00000020 was made with 0.9999"
exit $fail
