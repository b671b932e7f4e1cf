#!/usr/bin/env python3
"""The bucketed gradient all-reduce (Note [Gradient buckets]) on CPU ranks, same machine, same run.

  .venv/bin/python bench/allreduce.py [--steps N] [--workdir DIR]
  .venv/bin/python bench/allreduce.py --sweep [--ranks 2] [--max-log2 26] [--out FILE] [--link cpu|pcie|nvlink]

For LoRA (small preset, 256², batch 1 per rank) and full fine-tuning (small preset, 128², batch 1
per rank), under mpirun with 1 and 2 ranks of one thread each:
  - weak scaling: step time at 2 ranks / step time at 1 rank (same batch per rank; 1.0 is ideal);
  - the buckets' all-reduces against one flat MPI all-reduce of the same bytes after backward;
  - the fraction of the all-reduce time hidden behind backward, from the reducer's timestamps
    (per bucket: from launch to completion, and the part of that before backward returned).
Completion is seen when the reducer next enters MPI (in a later gradient hook, or in finish()),
so the busy times are upper bounds and the hidden fraction a lower bound.

--sweep (issue 20): xltune_bench_collectives under mpirun, one thread per rank: all-reduce,
reduce-scatter and all-gather of fp32 and bf16 buffers from 2^10 to 2^--max-log2 bytes, the median
of --reps repetitions per size, through the communicator the trainer would use (NCCL where the
build has it and the ranks have GPUs, else MPI). Writes FILE (default build/bench-collectives.json):
{"link", "host", "curves": [{"collective", "dtype", "transport", "ranks", "points": [{"bytes",
"seconds", "busbw_gbs"}]}]}, prints a table, and the latency and bus bandwidth that
bench/scaling_model.py --measured FILE fits from it. --link says what the ranks talk over: cpu
(CPU ranks: describes no GPU link, printed by the model but not used), pcie or nvlink (an NCCL run
on such a node: the model uses it in place of its assumed figures for that link).
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(bench, ranks, model, mode, res, batch, steps):
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               XLTUNE_LOG_LEVEL="warn")
    out = subprocess.run(["mpirun", "-np", str(ranks), "--oversubscribe", bench, model, mode, str(res), str(batch),
                          str(steps)], check=True, capture_output=True, text=True, env=env).stdout
    return json.loads([l for l in out.splitlines() if l.startswith("{")][0])


def sweep(a):
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               XLTUNE_LOG_LEVEL="warn")
    cmd = ["mpirun", "-np", str(a.ranks), "--oversubscribe", a.collectives_bin, "--min-log2", str(a.min_log2),
           "--max-log2", str(a.max_log2), "--reps", str(a.reps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    curves = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    if len(curves) != 6:
        sys.exit(f"xltune_bench_collectives printed {len(curves)} curves, not 6:\n{out}")
    doc = {"link": a.link, "host": os.uname().nodename, "command": " ".join(cmd), "curves": curves}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
    sizes = [p["bytes"] for p in curves[0]["points"]]
    print(f"{curves[0]['transport']}, {curves[0]['ranks']} ranks, median of {a.reps}: microseconds per call "
          f"(bus bandwidth GB/s) by buffer bytes; written to {a.out}")
    print(f"{'bytes':>11s}" + "".join(f"{c['collective'] + ' ' + c['dtype']:>22s}" for c in curves))
    for i, size in enumerate(sizes):
        print(f"{size:>11d}" + "".join(f"{1e6 * c['points'][i]['seconds']:12.1f} ({c['points'][i]['busbw_gbs']:6.2f})"
                                       for c in curves))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import scaling_model  # noqa: E402  (bench/, next to this file)
    for c in curves:
        fit = scaling_model.fit_curve(c["points"], c["collective"], c["ranks"])
        print(f"fit {c['collective']:15s} {c['dtype']}: bus bandwidth {fit['busbw_gbs']:7.2f} GB/s, "
              f"latency {1e6 * fit['latency_s']:6.1f} us per hop")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sweep", action="store_true", help="the collective size sweep (issue 20) instead")
    p.add_argument("--ranks", type=int, default=2, help="--sweep: MPI ranks")
    p.add_argument("--min-log2", type=int, default=10, help="--sweep: smallest buffer, 2^N bytes")
    p.add_argument("--max-log2", type=int, default=26, help="--sweep: largest buffer, 2^N bytes")
    p.add_argument("--reps", type=int, default=5, help="--sweep: repetitions per size (the median is kept)")
    p.add_argument("--link", default="cpu", choices=("cpu", "pcie", "nvlink"), help="--sweep: what the ranks talk over")
    p.add_argument("--out", default=os.path.join(ROOT, "build", "bench-collectives.json"), help="--sweep: the JSON file")
    p.add_argument("--collectives-bin", default=os.path.join(ROOT, "build", "bin", "xltune_bench_collectives"))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--workdir", default=os.path.join(ROOT, "build", "bench-train"))
    p.add_argument("--xltune", default=os.path.join(ROOT, "build", "bin", "xltune"))
    p.add_argument("--bin", default=os.path.join(ROOT, "build", "bin", "xltune_bench_allreduce"))
    a = p.parse_args()
    if a.sweep:
        return sweep(a)
    model = os.path.join(a.workdir, "small")
    if not os.path.exists(os.path.join(model, "model_index.json")):
        subprocess.run([a.xltune, "init-model", "--preset", "small", "--out", model], check=True, stdout=subprocess.DEVNULL)
    for mode, res in (("lora", 256), ("full", 128)):
        one = run(a.bin, 1, model, mode, res, 1, a.steps)
        two = run(a.bin, 2, model, mode, res, 1, a.steps)
        mb = sum(two["bucket_bytes"]) / 2**20
        busy, hidden = sum(two["bucket_busy_ms"]), sum(two["bucket_hidden_ms"])
        print(f"{mode}: small preset, {res}x{res}, batch 1 per rank, 1 thread per rank, median of {a.steps} steps")
        print(f"  step: 1 rank {one['step_ms']:8.1f} ms, 2 ranks {two['step_ms']:8.1f} ms -> weak scaling "
              f"{one['step_ms'] / two['step_ms']:.2f} (1.0 ideal)")
        print(f"  gradients: {mb:.1f} MiB in {len(two['bucket_bytes'])} buckets; one flat all-reduce of the same bytes "
              f"{two['flat_allreduce_ms']:.1f} ms; the buckets' all-reduces in flight {busy:.1f} ms in all, "
              f"{hidden:.1f} ms of it ({100 * hidden / max(busy, 1e-9):.0f} %) before backward returned")
        exposed = max(0.0, busy - hidden)
        print(f"  exposed communication: {exposed:.1f} ms per step with buckets vs {two['flat_allreduce_ms']:.1f} ms "
              f"for a flat all-reduce after backward")


if __name__ == "__main__":
    main()
