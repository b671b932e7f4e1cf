#!/usr/bin/env bash
# xltune train on many ranks (mpirun, CPU, MPI all-reduce), on the tiny model:
#   - 2 ranks x batch b = 1 rank x batch 2b: the same samples per step, the same losses and final
#     weights up to reduction order, for LoRA + pivotal tuning (pivot inside) and full fine-tuning,
#     with the optimizer state sharded (ZeRO-1: rank 0 holds half of it) and whole;
#   - --cuda_graph static on 2 ranks (the captured step's segments, run eagerly), replicated and
#     ZeRO-1: the eager step's tar byte for byte;
#   - full fine-tuning with gradients reduced in bf16 (and weights all-gathered in bf16): near the
#     fp32 reduction's weights, the difference printed;
#   - 1, 2 and 3 ranks with one global batch: the same steps, every sample once per epoch;
#   - a rank that raises, and a rank killed with SIGKILL mid-run: the job ends within 10 s,
#     naming the rank; nothing hangs and no trained_model.tar appears;
#   - Note [No hang]: a frozen rank (SIGSTOP) under --collective_timeout 5: the other ends the job
#     within the timeout + 10 s, in one line naming itself and the step (time printed); a rank
#     SIGKILLed inside a checkpoint write: the other ends within 10 s (time printed), the last
#     complete checkpoint resumes, bit-identical to a run never killed; SIGTERM as soon as the
#     process can catch it (before libtorch has initialised) and 0.1 s after the start: exit 75,
#     nothing trained.
#   mpi_train_test.sh XLTUNE PYTHON WORKDIR MODEL
set -u
xltune=$1 py=$2 dir=$3 model=$4
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rm -rf "$dir" && mkdir -p "$dir"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
# Open MPI's shared-memory transport wants a writable session folder; keep it inside the test's.
export OMPI_MCA_orte_tmpdir_base=$dir PRTE_MCA_prte_tmpdir_base=$dir TMPDIR=$dir
mpi() { local n=$1; shift; mpirun -np "$n" --oversubscribe "$@"; }

"$py" - "$root/data/samples" "$dir" <<'PY' || exit 1
import io, os, sys, zipfile
from PIL import Image
samples, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(os.path.join(out, "photos.zip"), "w") as z:
    for name in sorted(os.listdir(samples)):
        buf = io.BytesIO()
        Image.open(os.path.join(samples, name)).convert("RGB").resize((96, 72)).save(buf, "JPEG", quality=90)
        z.writestr(name.replace(".png", ".jpg"), buf.getvalue())
PY
common=(--model "$model" --input_images "$dir/photos.zip" --resolution 64 --seed 5)
compare() { expect 0 "$1" "$py" "$root/tests/reference/compare_runs.py" "$2" "$3"; tail -n 3 "$dir/out"; }

# LoRA + pivotal tuning: 8 steps, pivot after 4, warmup inside.
lora=(--max_train_steps 8 --lora_rank 4 --lora_lr 1e-3 --ti_lr 1e-3 --lr_scheduler linear --lr_warmup_steps 2)
expect 0 "LoRA, 1 rank, batch 4" "$xltune" train "${common[@]}" "${lora[@]}" --train_batch_size 4 --output_dir "$dir/l1"
expect 0 "LoRA, 2 ranks, batch 2 (replicas checked every 2 steps)" mpi 2 "$xltune" train "${common[@]}" "${lora[@]}" \
  --train_batch_size 2 --replica_check_steps 2 --output_dir "$dir/l2"
has "$dir/err" "[xltune r0 "
ls "$dir/l2/latents" | grep -q "latents-r00001.h5" || { echo "FAIL: rank 1 encoded no latent slice"; fail=1; }
compare "2 x 2 = 1 x 4 (LoRA + pivotal tuning)" "$dir/l1" "$dir/l2"
# Note [The step as a CUDA graph] on 2 ranks, --cuda_graph static: the step's two segments with the
# bucketed all-reduce between them, run eagerly, are the eager step bit for bit (the fused AdamW
# kernel both times: the captured path needs it).
# Batch 1 a rank: 6 photos make 3 full global batches an epoch, so every step has one shape.
expect 0 "LoRA, 2 ranks, fused AdamW" mpi 2 "$xltune" train "${common[@]}" "${lora[@]}" --train_batch_size 1 \
  --adamw_kernel fused --output_dir "$dir/l2fused"
expect 0 "LoRA, 2 ranks, fused AdamW, --cuda_graph static" mpi 2 "$xltune" train "${common[@]}" "${lora[@]}" \
  --train_batch_size 1 --adamw_kernel fused --cuda_graph static --output_dir "$dir/l2static" \
  && has "$dir/out" "--cuda_graph static: 4 steps from static inputs: 1 captures, 1 replays"
cmp -s "$dir/l2fused/trained_model.tar" "$dir/l2static/trained_model.tar" \
  && echo "ok   2 ranks: --cuda_graph static = eager, the tar byte for byte" \
  || { echo "FAIL: 2 ranks: --cuda_graph static changed the tar"; fail=1; }

# Full fine-tuning with gradient checkpointing (the reducer sees recompute's nested backward).
full=(--max_train_steps 6 --is_lora false --unet_learning_rate 1e-4 --gradient_checkpointing true --save_dtype fp32)
expect 0 "full FT, 1 rank, batch 4" "$xltune" train "${common[@]}" "${full[@]}" --train_batch_size 4 --output_dir "$dir/f1"
expect 0 "full FT, 2 ranks, batch 2" mpi 2 "$xltune" train "${common[@]}" "${full[@]}" --train_batch_size 2 \
  --replica_check_steps 3 --output_dir "$dir/f2"
compare "2 x 2 = 1 x 4 (full fine-tuning, ZeRO-1: the optimizer state sharded)" "$dir/f1" "$dir/f2"
expect 0 "full FT, 2 ranks, batch 2, --zero off" mpi 2 "$xltune" train "${common[@]}" "${full[@]}" --train_batch_size 2 \
  --zero off --output_dir "$dir/f2whole"
compare "2 x 2 = 1 x 4 (full fine-tuning, the state whole on every rank)" "$dir/f1" "$dir/f2whole"
# --cuda_graph static with ZeRO-1 (Note [The step as a CUDA graph]): the micro-batch's segment, the
# local norms' and the update's, with the reduce-scatter, the norm's all-reduce and the all-gathers
# run eagerly between and after them, are the eager step bit for bit. 8 steps, batch 1 a rank (one
# shape), the pivot after 4: steps 5-8 from static inputs.
zero8=(--max_train_steps 8 --is_lora false --unet_learning_rate 1e-4 --save_dtype fp32 --train_batch_size 1
  --adamw_kernel fused --zero on)
expect 0 "full FT, ZeRO-1, 2 ranks, fused AdamW" mpi 2 "$xltune" train "${common[@]}" "${zero8[@]}" \
  --output_dir "$dir/z2fused"
expect 0 "full FT, ZeRO-1, 2 ranks, fused AdamW, --cuda_graph static" mpi 2 "$xltune" train "${common[@]}" \
  "${zero8[@]}" --cuda_graph static --output_dir "$dir/z2static" \
  && has "$dir/out" "--cuda_graph static: 4 steps from static inputs: 1 captures, 1 replays"
cmp -s "$dir/z2fused/trained_model.tar" "$dir/z2static/trained_model.tar" \
  && echo "ok   2 ranks, ZeRO-1: --cuda_graph static = eager, the tar byte for byte" \
  || { echo "FAIL: 2 ranks, ZeRO-1: --cuda_graph static changed the tar"; fail=1; }
# Sharded against whole on the same 2 ranks: only the gradient norm's and the reductions' order
# differ (measured 1.6e-7 of the largest value, losses 5e-8).
expect 0 "ZeRO-1 = unsharded AdamW, 2 ranks" "$py" "$root/tests/reference/compare_runs.py" "$dir/f2" "$dir/f2whole" \
  --weight-tol 1e-6 --loss-tol 3e-7
tail -n 2 "$dir/out"
"$py" - "$dir" <<'PY' || fail=1
import json, sys
d = sys.argv[1]
state = {r: json.loads(open(f"{d}/{r}/metrics.jsonl").readlines()[-1])["optimizer_state_bytes"] for r in ("f1", "f2", "f2whole")}
zero = json.load(open(f"{d}/f2/run_config.json"))["optimizer"]["zero_1"]
assert zero is True and json.load(open(f"{d}/f2whole/run_config.json"))["optimizer"]["zero_1"] is False
assert state["f2whole"] == state["f1"], state
# Rank 0 holds half the sharded UNet tensors' moments (and its chunks' padding), and the whole of
# the replicated stem's (Note [Replicated stem under ZeRO-1]) and of the token rows'.
groups = {g["name"].split(" (")[0]: g["parameters"]  # "unet (ZeRO-1: ...)" as "unet"
          for g in json.load(open(f"{d}/f2/run_config.json"))["optimizer"]["groups"]}
assert groups["unet_replicated"] > 0, groups
expect = (sum(groups.values()) - groups["unet"] / 2) / sum(groups.values())
assert 0.99 * expect < state["f2"] / state["f1"] < 1.01 * expect, (state, groups)
print(f"ok   ZeRO-1 on 2 ranks: rank 0 holds {state['f2'] / state['f1']:.3f} of the optimizer state "
      f"({state['f2']} of {state['f1']} bytes; {expect:.3f} expected with "
      f"{groups['unet_replicated'] / (groups['unet'] + groups['unet_replicated']):.3f} of the UNet replicated)")
PY
# Note [bf16 gradient reduction]: the same 2-rank full fine-tuning (ZeRO-1) with the gradients
# reduce-scattered in bf16 (MPI sums an fp32 copy), then with the weights all-gathered in bf16 too,
# and unsharded with the bucketed all-reduce in bf16: each completes with identical replicas, says
# so in run_config.json, and ends near the fp32 reduction's run (f2). The gradients' rounding (2^-8)
# moves Adam's normalised steps little; the bf16 all-gather rounds the weights themselves (2^-9).
gather=(--grad_reduce_dtype bf16 --zero_gather_dtype bf16 --checkpointing_steps 3)
for run in "f2bf16:--grad_reduce_dtype bf16" "f2bf16g:${gather[*]}" "f2whole16:--zero off --grad_reduce_dtype bf16"; do
  name=${run%%:*} flags=${run#*:}
  # shellcheck disable=SC2086  # the flags split into words on purpose
  expect 0 "full FT, 2 ranks, $flags" mpi 2 "$xltune" train "${common[@]}" "${full[@]}" --train_batch_size 2 $flags \
    --replica_check_steps 3 --output_dir "$dir/$name"
done
"$py" - "$dir" "$model" <<'PY' || fail=1
import json, os, sys
from safetensors.torch import load_file
d, model = sys.argv[1], sys.argv[2]
want = {"f2": ("fp32", "fp32"), "f2bf16": ("bf16", "fp32"), "f2bf16g": ("bf16", "bf16"), "f2whole16": ("bf16", "none")}
for run, (reduce, gather) in want.items():
    r = json.load(open(f"{d}/{run}/run_config.json"))["resolved"]
    assert (r["grad_reduce_dtype"], r["zero_gather_dtype"]) == (reduce, gather), (run, r)
w0 = load_file(os.path.join(model, "unet", "diffusion_pytorch_model.safetensors"))
ref = load_file(f"{d}/f2/trainer_state.safetensors")
ref_loss = [json.loads(l)["loss"] for l in open(f"{d}/f2/metrics.jsonl")]
# Tolerances: ||a - b|| / ||a|| of all the weights (the bf16 all-gather's rounding alone is about
# 2^-9 / sqrt(3) = 1.1e-3 of it), of the training's change ||a - w0|| (6 steps of lr 1e-4), and the
# losses' relative difference.
# (weights, change, losses); the bf16 all-gather's forward sees weights rounded by ~2^-9.
tol = {"f2bf16": (1e-3, 0.25, 1e-2), "f2bf16g": (5e-3, None, 3e-2), "f2whole16": (1e-3, 0.25, 1e-2)}
for run, (weight_tol, change_tol, loss_tol) in tol.items():
    s = load_file(f"{d}/{run}/trainer_state.safetensors")
    assert set(s) == set(ref), run
    num = den = change = 0.0
    based = 0
    for k, a in ref.items():
        num += (a - s[k]).double().pow(2).sum().item()
        den += a.double().pow(2).sum().item()
        base = w0.get(k[len("unet."):]) if k.startswith("unet.") else None
        if base is not None and base.numel() == a.numel():
            change += (a - base.float().view(a.shape)).double().pow(2).sum().item()
            based += 1
    rel = (num / den) ** 0.5
    of_change = (num / change) ** 0.5 if based and change > 0 else None
    loss = [json.loads(l)["loss"] for l in open(f"{d}/{run}/metrics.jsonl")]
    worst_loss = max(abs(x - y) / abs(x) for x, y in zip(ref_loss, loss))
    shown = "n/a (no initial weights matched)" if of_change is None else f"{of_change:.2e}"
    print(f"ok?  {run} against fp32 reduction: ||a - b|| / ||a|| = {rel:.2e} (tolerance {weight_tol:.0e}), "
          f"/ ||a - w0|| = {shown} ({based} tensors), losses {worst_loss:.2e} (tolerance {loss_tol:.0e})")
    assert len(loss) == len(ref_loss) and rel <= weight_tol and worst_loss <= loss_tol, run
    assert change_tol is None or of_change is None or of_change <= change_tol, run
print("ok   bf16 reduction (and all-gather) on 2 MPI ranks: complete, recorded, near the fp32 reduction's weights")
PY
# The bf16 all-gather's run stopped after its checkpoint of step 3 (rank 1 raises in step 5) and
# resumed: the fp32 masters come back from the shards, so it ends as the run never stopped did,
# masters and weights bit for bit (from the bf16 weights alone, the masters would differ by ~2^-9).
expect 1 "bf16 all-gather, rank 1 raises in step 5" env XLTUNE_FAULT_RANK_STEP=1:5 timeout 120 \
  mpirun -np 2 --oversubscribe "$xltune" train \
  "${common[@]}" "${full[@]}" --train_batch_size 2 "${gather[@]}" --output_dir "$dir/f2bf16g_resumed"
expect 0 "bf16 all-gather, resumed" mpi 2 "$xltune" train "${common[@]}" "${full[@]}" --train_batch_size 2 "${gather[@]}" \
  --output_dir "$dir/f2bf16g_resumed"
has "$dir/err" "resumed from $dir/f2bf16g_resumed/checkpoints/step-00000003"
"$py" - "$dir/f2bf16g" "$dir/f2bf16g_resumed" <<'PY' || fail=1
import glob, os, sys
from safetensors.torch import load_file
a, b = sys.argv[1], sys.argv[2]
pairs = [(f"{a}/trainer_state.safetensors", f"{b}/trainer_state.safetensors")]
shards = sorted(glob.glob(f"{a}/checkpoints/step-00000006/optimizer-r*.safetensors"))
assert len(shards) == 2, shards
pairs += [(f, f.replace(a, b, 1)) for f in shards]
masters = 0
for fa, fb in pairs:
    ta, tb = load_file(fa), load_file(fb)
    assert set(ta) == set(tb), fa
    for k in ta:
        masters += k.endswith(".master")
        d = (ta[k].double() - tb[k].double()).abs().max().item() if ta[k].numel() else 0.0
        assert d == 0, (fa, k, d)
assert masters > 0, "no masters in the shards"
print(f"ok   bf16 all-gather resumed at step 3: weights and {masters} master chunks bit-identical at step 6")
PY
expect 2 "--grad_reduce_dtype fp16 (a usage error)" "$xltune" train "${common[@]}" --grad_reduce_dtype fp16 --output_dir "$dir/r16"
has "$dir/err" "--grad_reduce_dtype 'fp16': expected auto, fp32, bf16"
expect 2 "--zero on with LoRA (a usage error)" "$xltune" train "${common[@]}" --zero on --output_dir "$dir/zlora"
has "$dir/err" "--zero on: ZeRO-1 shards full fine-tuning's optimizer state"

# 1, 2 and 3 ranks, one global batch of 6 (the 6 photos): the same 4 steps, each an epoch.
for n in 1 2 3; do
  expect 0 "$n rank(s), batch $((6 / n))" mpi "$n" "$xltune" train "${common[@]}" --max_train_steps 4 \
    --train_batch_size $((6 / n)) --output_dir "$dir/w$n"
done
"$py" - "$dir" <<'PY' || fail=1
import json, sys
runs = {n: [json.loads(l) for l in open(f"{sys.argv[1]}/w{n}/metrics.jsonl")] for n in (1, 2, 3)}
for n, m in runs.items():
    assert len(m) == 4, (n, len(m))
    for x in m:
        assert sorted(x["samples"]) == list(range(6)), (n, x["step"], x["samples"])
    assert [x["samples"] for x in m] == [x["samples"] for x in runs[1]], n
print("ok   1, 2 and 3 ranks: 4 steps each, every sample once per epoch, the same order")
PY

# A rank that raises at step 3: the job ends at once, naming the rank and the cause.
start=$(date +%s.%N)
expect 1 "rank 1 raises at step 3" env XLTUNE_FAULT_RANK_STEP=1:3 timeout 60 mpirun -np 2 "$xltune" train "${common[@]}" \
  --max_train_steps 50 --train_batch_size 2 --output_dir "$dir/fault"
has "$dir/err" "rank 1 of 2: error: injected fault"
lacks "$dir/fault/trained_model.tar"
"$py" -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); assert s < 30, s; print(f'ok   down in {s:.1f} s (model loading included)')" \
  "$start" "$(date +%s.%N)" || fail=1

# SIGKILL of rank 1 mid-run: mpirun takes the job down within 10 s.
mpirun -np 2 "$xltune" train "${common[@]}" --max_train_steps 100000 --train_batch_size 2 --checkpointing_steps 100000 \
  --output_dir "$dir/kill" >"$dir/kill.out" 2>"$dir/kill.err" &
launcher=$!
for _ in $(seq 1 600); do [ -s "$dir/kill/metrics.jsonl" ] && [ "$(wc -l < "$dir/kill/metrics.jsonl")" -ge 5 ] && break; sleep 0.1; done
victim=""
for p in $(pgrep -f -- "--output_dir $dir/kill"); do
  [ "$p" = "$launcher" ] && continue
  grep -qz "^OMPI_COMM_WORLD_RANK=1$" "/proc/$p/environ" 2>/dev/null && victim=$p
done
if [ -z "$victim" ]; then echo "FAIL: no rank 1 to kill"; fail=1; kill "$launcher"; else
  killed=$(date +%s.%N)
  kill -9 "$victim"
  timeout 30 tail --pid="$launcher" -f /dev/null
  rc=0; wait "$launcher" || rc=$?
  ended=$(date +%s.%N)
  "$py" -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); assert s < 10, s; print(f'ok   SIGKILL of rank 1: the job ended in {s:.1f} s (exit {sys.argv[3]})')" \
    "$killed" "$ended" "$rc" || fail=1
  [ "$rc" -ne 0 ] || { echo "FAIL: the job exited 0 after a rank was killed"; fail=1; }
  grep -qi "rank 1" "$dir/kill.err" && grep -qi "signal 9\|killed" "$dir/kill.err" && echo "ok   mpirun names rank 1 and the signal" \
    || { echo "FAIL: no message naming rank 1 and the signal:"; tail -n 5 "$dir/kill.err"; fail=1; }
  pgrep -f -- "--output_dir $dir/kill" >/dev/null && { echo "FAIL: ranks still running"; pkill -9 -f -- "--output_dir $dir/kill"; fail=1; }
fi
lacks "$dir/kill/trained_model.tar"

# The pid of rank R of the job writing to OUT (the launcher's children only).
rank_pid() {
  local p
  for p in $(pgrep -f -- "--output_dir $2"); do
    [ "$p" != "$3" ] && grep -qz "^OMPI_COMM_WORLD_RANK=$1$" "/proc/$p/environ" 2>/dev/null && { echo "$p"; return; }
  done
}
since() { "$py" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

# A frozen rank (SIGSTOP: no exit for mpirun to notice) under --collective_timeout 5: rank 0's
# watchdog ends the job in one line naming rank 0 and the step, within the timeout + 10 s.
mpirun -np 2 "$xltune" train "${common[@]}" --max_train_steps 100000 --train_batch_size 2 --checkpointing_steps 100000 \
  --collective_timeout 5 --output_dir "$dir/frozen" >"$dir/frozen.out" 2>"$dir/frozen.err" &
launcher=$!
for _ in $(seq 1 600); do [ -s "$dir/frozen/metrics.jsonl" ] && [ "$(wc -l < "$dir/frozen/metrics.jsonl")" -ge 5 ] && break; sleep 0.1; done
victim=$(rank_pid 1 "$dir/frozen" "$launcher")
if [ -z "$victim" ]; then echo "FAIL: no rank 1 to freeze"; fail=1; kill "$launcher"; else
  frozen=$(date +%s.%N)
  kill -STOP "$victim"
  timeout 60 tail --pid="$launcher" -f /dev/null
  ended=$(date +%s.%N)
  rc=0; kill -0 "$launcher" 2>/dev/null && { echo "FAIL: the job still runs 60 s after rank 1 froze"; fail=1; kill -9 "$launcher"; }
  wait "$launcher" || rc=$?
  took=$(since "$frozen" "$ended")
  [ "$rc" -ne 0 ] || { echo "FAIL: exit 0 with a frozen rank"; fail=1; }
  line=$(grep -E "rank 0: .* at step [0-9]+ did not complete in 5 s: another rank died or hangs \(--collective_timeout\)" \
    "$dir/frozen.err")
  step=$(echo "$line" | sed -nE 's/.* at step ([0-9]+) did not complete.*/\1/p' | head -n 1)
  # Rank 0 logs a step once its collectives are done, and reads each step one step late (Note
  # [Reading a step one step late]): it logs step s after issuing s + 1, so it waits in the step
  # after its last line (s's agreement) or the one after that (s + 1's gradients).
  after=$(wc -l < "$dir/frozen/metrics.jsonl")
  if [ "$(echo "$line" | grep -c .)" = 1 ] && { [ "$step" = $((after + 1)) ] || [ "$step" = $((after + 2)) ]; }; then
    echo "ok   frozen rank 1: rank 0 ended the job in $took s (exit $rc, --collective_timeout 5), naming step $step" \
      "($after logged)"
  else echo "FAIL: not one line naming rank 0 and step $((after + 1)) or $((after + 2)):"; tail -n 5 "$dir/frozen.err"; fail=1; fi
  # At least the timeout less the little the collective had waited before the freeze.
  "$py" -c "import sys; s=float(sys.argv[1]); assert 3 <= s < 15, s" "$took" \
    || { echo "FAIL: the frozen rank's job ended after $took s (expected about 5, below 15)"; fail=1; }
  kill -9 "$victim" 2>/dev/null
fi
for p in $(pgrep -f -- "--output_dir $dir/frozen"); do kill -9 "$p" 2>/dev/null; done
lacks "$dir/frozen/trained_model.tar"

# SIGKILL of rank 0 inside the checkpoint write of step 4 (its files written, no manifest): rank 1,
# waiting in the checkpoint's barrier, ends within 10 s; the checkpoint of step 2 is the last
# complete one, and the resumed run ends bit-identical to one never killed.
ck=("${common[@]}" "${lora[@]}" --train_batch_size 2 --checkpointing_steps 2)
expect 0 "LoRA, 2 ranks, checkpoints every 2 steps, not killed" mpi 2 "$xltune" train "${ck[@]}" --output_dir "$dir/ck"
rc=0
env XLTUNE_FAULT_KILL_IN_CHECKPOINT=4 timeout 120 mpirun -np 2 "$xltune" train "${ck[@]}" --output_dir "$dir/ckkill" \
  >"$dir/ckkill.out" 2>"$dir/ckkill.err" || rc=$?
ended=$(date +%s.%N)
killed=$(sed -nE 's/.*XLTUNE_FAULT_KILL_IN_CHECKPOINT=4\): SIGKILL at ([0-9.]+).*/\1/p' "$dir/ckkill.err" | head -n 1)
if [ -z "$killed" ] || [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
  echo "FAIL: no kill inside the checkpoint of step 4 that ended the job (exit $rc)"; tail -n 5 "$dir/ckkill.err"; fail=1
else
  took=$(since "$killed" "$ended")
  "$py" -c "import sys; s=float(sys.argv[1]); assert s < 10, s" "$took" \
    && echo "ok   SIGKILL of rank 0 inside the checkpoint of step 4: the job ended in $took s (exit $rc)" \
    || { echo "FAIL: the job ended $took s after the kill"; fail=1; }
fi
for p in $(pgrep -f -- "--output_dir $dir/ckkill"); do kill -9 "$p" 2>/dev/null; done
[ "$(cat "$dir/ckkill/checkpoints/latest" 2>/dev/null)" = "step-00000002" ] \
  && echo "ok   latest names step 2, the last complete checkpoint" \
  || { echo "FAIL: latest is '$(cat "$dir/ckkill/checkpoints/latest" 2>/dev/null)', expected step-00000002"; fail=1; }
lacks "$dir/ckkill/trained_model.tar"
expect 0 "resumed after the kill" mpi 2 "$xltune" train "${ck[@]}" --output_dir "$dir/ckkill"
has "$dir/err" "resumed from $dir/ckkill/checkpoints/step-00000002"
if cmp -s "$dir/ck/trainer_state.safetensors" "$dir/ckkill/trainer_state.safetensors" &&
   "$py" -c "import json,sys; a,b=[[json.loads(l)['loss'] for l in open(p+'/metrics.jsonl')] for p in sys.argv[1:]]; sys.exit(0 if a==b and len(a)==8 else 1)" \
     "$dir/ck" "$dir/ckkill"; then
  echo "ok   killed inside a checkpoint, resumed: bit-identical weights, identical losses"
else echo "FAIL: the resumed run differs from the one never killed"; fail=1; fi

# SIGTERM within 0.1 s of the start (libtorch still initialising: before, a fatal window of about
# 0.3 s): exit 75 (the batch scripts requeue), nothing trained, nothing checkpointed. "first": as
# soon as the process catches SIGTERM (its SigCgt mask; the handler is installed from
# .preinit_array, after the loader has mapped libtorch, whose time varies: a fixed 0.05 s could
# come before it, when nothing can catch the signal).
catches_term() {  # SIGTERM is signal 15: bit 14 of the mask
  local mask
  mask=$(awk '/^SigCgt:/ { print $2 }' "/proc/$1/status" 2>/dev/null)
  [ -n "$mask" ] && (( (16#$mask >> 14) & 1 ))
}
for delay in first 0.1; do
  out="$dir/term$delay"
  "$xltune" train "${common[@]}" "${lora[@]}" --train_batch_size 2 --output_dir "$out" >"$dir/term.out" 2>"$dir/term.err" &
  pid=$!
  if [ "$delay" = first ]; then
    for _ in $(seq 1 5000); do catches_term "$pid" && break; sleep 0.001; done
  else
    sleep "$delay"
  fi
  kill -TERM "$pid"
  when="$delay s after the start"; [ "$delay" = first ] && when="as soon as it could be caught"
  rc=0; wait "$pid" || rc=$?
  if [ "$rc" = 75 ] && grep -qF "stopped by a stop signal" "$dir/term.err" && [ ! -e "$out/checkpoints/latest" ] &&
     [ ! -e "$out/trained_model.tar" ]; then
    echo "ok   SIGTERM $when: exit 75, nothing trained ($(grep -oE "stopped by a stop signal [^,]*" "$dir/term.err"))"
  else echo "FAIL: SIGTERM $when: exit $rc"; tail -n 5 "$dir/term.err"; fail=1; fi
done
exit $fail
