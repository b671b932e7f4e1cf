#!/usr/bin/env python3
"""The bucketed gradient all-reduce (Note [Gradient buckets]) on CPU ranks, same machine, same run.

  .venv/bin/python bench/allreduce.py [--steps N] [--workdir DIR]

For LoRA (small preset, 256², batch 1 per rank) and full fine-tuning (small preset, 128², batch 1
per rank), under mpirun with 1 and 2 ranks of one thread each:
  - weak scaling: step time at 2 ranks / step time at 1 rank (same batch per rank; 1.0 is ideal);
  - the buckets' all-reduces against one flat MPI all-reduce of the same bytes after backward;
  - the fraction of the all-reduce time hidden behind backward, from the reducer's timestamps
    (per bucket: from launch to completion, and the part of that before backward returned).
Completion is seen when the reducer next enters MPI (in a later gradient hook, or in finish()),
so the busy times are upper bounds and the hidden fraction a lower bound.
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


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--workdir", default=os.path.join(ROOT, "build", "bench-train"))
    p.add_argument("--xltune", default=os.path.join(ROOT, "build", "bin", "xltune"))
    p.add_argument("--bin", default=os.path.join(ROOT, "build", "bin", "xltune_bench_allreduce"))
    a = p.parse_args()
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
