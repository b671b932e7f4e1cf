#!/usr/bin/env bash
# A real single-node Slurm on localhost: munge, slurmctld and slurmd from Debian's packages, all
# state in WORKDIR (no system file is touched). cluster/train-1node.sbatch is submitted with
# only its #SBATCH values changed (2 ranks, no GPUs, a short time limit), trains the tiny model
# through srun --mpi=pmix, and must produce trained_model.tar; a second job is stopped with
# SIGUSR1, requeues itself and must end bit-identical to a run never stopped. Every daemon started
# here is stopped when the test ends, whatever happens.
#   slurm_test.sh XLTUNE PYTHON WORKDIR MODEL
set -u
xltune=$1 py=$2 dir=$3 model=$4
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rm -rf "$dir" && mkdir -p "$dir"/{run,lib,log,state,spool}
chmod 700 "$dir"/run "$dir"/lib "$dir"/log
source "$root/tests/cli/lib.sh"
for tool in munged slurmctld slurmd sbatch sinfo; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (launch/setup installs slurm-wlm and munge)"; exit 1; }
done

stop_all() {
  for pid_file in "$dir/run/slurmd.pid" "$dir/run/slurmctld.pid" "$dir/run/munged.pid"; do
    [ -s "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null
  done
  sleep 1
  for pid_file in "$dir/run/slurmd.pid" "$dir/run/slurmctld.pid" "$dir/run/munged.pid"; do
    [ -s "$pid_file" ] && kill -9 "$(cat "$pid_file")" 2>/dev/null
  done
  return 0
}
trap stop_all EXIT

# munge with its own key, socket and files.
dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 2>/dev/null && chmod 400 "$dir/munge.key"
munged --force --key-file="$dir/munge.key" --socket="$dir/run/munge.socket" --pid-file="$dir/run/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/lib/munged.seed" || { echo "FAIL: munged did not start"; exit 1; }
munge -S "$dir/run/munge.socket" -n | unmunge -S "$dir/run/munge.socket" | grep -q "Success" \
  || { echo "FAIL: munge does not work"; exit 1; }
echo "ok   munged"

# Slurm on ports nobody else is likely to use.
host=$(hostname -s)
port=$((20000 + RANDOM % 20000))
cat > "$dir/slurm.conf" <<CONF
ClusterName=xltune-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/run/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=$port
SlurmdPort=$((port + 1))
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$SLURM_CONF" || { echo "FAIL: slurmctld did not start"; tail -n 20 "$dir/log/slurmctld.log"; exit 1; }
slurmd -f "$SLURM_CONF" || { echo "FAIL: slurmd did not start"; tail -n 20 "$dir/log/slurmd.log"; exit 1; }
for _ in $(seq 1 60); do sinfo -h -o %t 2>/dev/null | grep -q idle && break; sleep 0.5; done
sinfo -h -o %t | grep -q idle || { echo "FAIL: the node never became idle"; sinfo; tail -n 20 "$dir/log/slurmctld.log"; exit 1; }
echo "ok   slurmctld and slurmd, node idle"

# The photos, and the batch script with its #SBATCH values for this machine.
"$py" - "$root/data/samples" "$dir/photos.zip" <<'PY' || exit 1
import io, os, sys, zipfile
from PIL import Image
with zipfile.ZipFile(sys.argv[2], "w") as z:
    for name in sorted(os.listdir(sys.argv[1]))[:4]:
        buf = io.BytesIO()
        Image.open(os.path.join(sys.argv[1], name)).convert("RGB").resize((96, 72)).save(buf, "JPEG")
        z.writestr(name.replace(".png", ".jpg"), buf.getvalue())
PY
sed -e 's|^#SBATCH --ntasks-per-node=.*|#SBATCH --ntasks-per-node=2|' -e '/^#SBATCH --gpus-per-node=/d' \
    -e 's|^#SBATCH --cpus-per-task=.*|#SBATCH --cpus-per-task=1|' -e 's|^#SBATCH --time=.*|#SBATCH --time=00:10:00|' \
    -e "s|^#SBATCH --output=.*|#SBATCH --output=$dir/xltune-%j.out|" "$root/cluster/train-1node.sbatch" > "$dir/job.sbatch"
diff <(grep -v '^#SBATCH' "$root/cluster/train-1node.sbatch") <(grep -v '^#SBATCH' "$dir/job.sbatch") >/dev/null \
  && echo "ok   the batch script is unchanged but for its #SBATCH values" || { echo "FAIL: the script changed"; fail=1; }

cd "$root"
expect 0 "sbatch --wait cluster/train-1node.sbatch (2 ranks)" timeout 300 sbatch --wait \
  --export="ALL,XLTUNE=$xltune,MODEL=$model,INPUT=$dir/photos.zip,OUTPUT=$dir/training_out,CONFIG=configs/quickstart.cfg,OMP_NUM_THREADS=1" \
  "$dir/job.sbatch" --resolution 64 --train_batch_size 2 --max_train_steps 6 --seed 1 --log_every 1
log=$(ls "$dir"/xltune-*.out 2>/dev/null | head -1)
[ -n "$log" ] && cat "$log" | tail -n 8
[ -s "$dir/training_out/trained_model.tar" ] && echo "ok   the job produced trained_model.tar" || { echo "FAIL: no trained_model.tar"; fail=1; }
[ -n "$log" ] && has "$log" "2 ranks" && has "$log" "[xltune r0 " && has "$log" "step 6/6"
"$py" -c "import json,sys; c=json.load(open(sys.argv[1])); assert c['resolved']['world_size'] == 2, c['resolved']" \
  "$dir/training_out/run_config.json" && echo "ok   run_config.json: world size 2" || { echo "FAIL: world size"; fail=1; }

# Stopped and requeued: SIGUSR1 to the batch shell (what --signal=B:USR1@120 sends before the
# time limit) -> the ranks checkpoint and exit 75 -> the script requeues the job -> it runs again
# under the same id and output folder, resumes, and ends as a run that was never stopped.
train_args=(--resolution 64 --train_batch_size 2 --max_train_steps 40 --seed 3 --log_every 1 --checkpointing_steps 1000)
jobid=$(sbatch --parsable \
  --export="ALL,XLTUNE=$xltune,MODEL=$model,INPUT=$dir/photos.zip,OUTPUT=$dir/requeued_out,CONFIG=configs/quickstart.cfg,OMP_NUM_THREADS=1" \
  "$dir/job.sbatch" "${train_args[@]}")
echo "ok   submitted job $jobid"
for _ in $(seq 1 1200); do
  [ -s "$dir/requeued_out/metrics.jsonl" ] && [ "$(wc -l < "$dir/requeued_out/metrics.jsonl")" -ge 5 ] && break
  sleep 0.1
done
scancel -s USR1 -b "$jobid" && echo "ok   scancel -s USR1 -b $jobid after $(wc -l < "$dir/requeued_out/metrics.jsonl") steps"
state=""
for _ in $(seq 1 300); do
  state=$(scontrol show job "$jobid" 2>/dev/null | grep -o "JobState=[A-Z_]*" | cut -d= -f2)
  restarts=$(scontrol show job "$jobid" 2>/dev/null | grep -o "Restarts=[0-9]*" | cut -d= -f2)
  [ "$state" = COMPLETED ] && break
  case "$state" in FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) break ;; esac
  # Slurm holds a requeued job back a while (StartTime about 2 minutes on), time for the node to
  # clean up the first run; not a test of ours: once the node is idle again, start it now.
  if [ "$state" = PENDING ] && [ "${restarts:-0}" -ge 1 ] && [ -z "${moved:-}" ] &&
     sinfo -h -o %t | grep -qx idle && [ -z "$(squeue -h -s -j "$jobid" 2>/dev/null)" ]; then
    sleep 2
    echo "ok   requeued: $(scontrol show job "$jobid" | grep -o "Reason=[^ ]*\|StartTime=[^ ]*" | tr "\n" " ")-> StartTime=now"
    scontrol update JobId="$jobid" StartTime=now && moved=1
  fi
  sleep 1
done
[ "$state" = COMPLETED ] && [ "${restarts:-0}" -ge 1 ] && echo "ok   job $jobid: $state after $restarts requeue(s)" \
  || { echo "FAIL: job $jobid is $state (restarts ${restarts:-?})"; scontrol show job "$jobid" | head -n 20; fail=1; }
log="$dir/xltune-$jobid.out"
has "$log" "passing SIGUSR1 to the ranks"
has "$log" "stopped at a checkpoint; requeueing"
has "$log" "resumed from $dir/requeued_out/checkpoints/step-"
# The same run straight through, started by mpirun: bit-identical weights, the same 40 losses.
expect 0 "the same run, never stopped (mpirun, 2 ranks)" env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  OMP_NUM_THREADS=1 mpirun -np 2 --oversubscribe "$xltune" train --config configs/quickstart.cfg --model "$model" \
  --input_images "$dir/photos.zip" --output_dir "$dir/straight_out" "${train_args[@]}"
if cmp -s "$dir/requeued_out/trainer_state.safetensors" "$dir/straight_out/trainer_state.safetensors" &&
   "$py" -c "import json,sys; a,b=[[json.loads(l)['loss'] for l in open(p+'/metrics.jsonl')] for p in sys.argv[1:]]; sys.exit(0 if a==b and len(a)==40 else 1)" \
     "$dir/requeued_out" "$dir/straight_out"; then
  echo "ok   stopped, requeued and resumed = never stopped: bit-identical weights, identical losses"
else echo "FAIL: the requeued run differs from the straight one"; fail=1; fi
exit $fail
