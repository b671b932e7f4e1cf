#!/usr/bin/env python3
"""The summary of bench/gpu/run: joins xltune's and diffusers' results by case and prints the
ratios diffusers / xltune of seconds per step and of peak memory (above 1: xltune is faster or
smaller), the correctness checks, and every case that failed, timed out or was skipped.

  compare.py RESULTS.jsonl [MORE.jsonl ...]

Reads JSON lines. bench/gpu/run tags each with "kind" (env, train, unet, ops, check, status), "case"
(e.g. lora-1024-b1, 1x128-plain) and, where one case runs twice, "run" (diffusers-alone: the
diffusers case again at the end, the GPU and the CPUs its own); lines without tags (the
benchmarks' own output) are joined by their fields. Other lines are ignored.
"""
import json
import math
import sys

NAN = float("nan")


def load(paths):
    rows = []
    for path in paths:
        try:
            lines = open(path).read().splitlines()
        except OSError as e:
            print(f"compare.py: {e}", file=sys.stderr)
            continue
        for line in lines:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


def kind_of(r):
    if "kind" in r:
        return r["kind"]
    if r.get("impl") == "env":
        return "env"
    if "check" in r:
        return "check"
    return "train" if "phase" in r else "unet" if "latent" in r else None


def case_of(r, kind):
    if r.get("case"):
        return r["case"]
    if kind == "train":
        ckpt = str(r.get("checkpointing")).lower() == "true"
        return f"{r.get('mode')}-{r.get('resolution')}-b{r.get('batch')}{'-ckpt' if ckpt else ''}"
    return f"{r.get('batch')}x{r.get('latent')}-{r.get('checkpointing')}"


def seconds(r):
    if "ms" in r:
        return r["ms"] / 1e3
    return r.get("seconds", NAN)


def gib(r):
    if "peak_gib" in r and r["peak_gib"] is not None and r["peak_gib"] >= 0:
        return r["peak_gib"]
    if "peak_bytes" in r:
        return r["peak_bytes"] / 2**30
    return NAN


def ratio(d, x):
    return d / x if x and not math.isnan(x) and not math.isnan(d) and x > 0 else NAN


def fmt(v, width, digits):
    return f"{'-':>{width}}" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:>{width}.{digits}f}"


def table(title, rows):
    """rows: {(case, phase): {run: row}}"""
    if not rows:
        return
    print(f"\n{title}  (ratio = diffusers / xltune; above 1: xltune faster / smaller)")
    print(f"{'case':<20} {'phase':<13} {'xltune s':>9} {'diffusers s':>11} {'ratio':>6} "
          f"{'xltune GiB':>10} {'diffusers GiB':>13} {'ratio':>6}")
    notes = set()
    order = {"before_pivot": 0, "after_pivot": 1}
    for (case, phase), runs in sorted(rows.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 2), kv[0][1])):
        x = runs.get("xltune", {})
        d, mark = runs.get("diffusers-alone"), " "
        if d is None:
            d = runs.get("diffusers", {})
            if d.get("concurrent"):
                mark = "*"
                notes.add("* diffusers measured in the background while the build ran (the GPU its own, the CPUs busy)")
        else:
            mark = "a"
            notes.add("a diffusers measured again at the end, alone (its background run is in results.jsonl)")
        xs, ds = (NAN if x.get("oom") else seconds(x)) if x else NAN, (NAN if d.get("oom") else seconds(d)) if d else NAN
        xg, dg = gib(x) if x else NAN, gib(d) if d else NAN
        if x.get("oom") or d.get("oom"):
            notes.add("- out of memory (oom) or not measured")
        print(f"{case:<20} {phase:<13} {fmt(xs, 9, 4)} {fmt(ds, 10, 4)}{mark} {fmt(ratio(ds, xs), 6, 2)} "
              f"{fmt(xg, 10, 2)} {fmt(dg, 13, 2)} {fmt(ratio(dg, xg), 6, 2)}")
    for n in sorted(notes):
        print(f"  {n}")


def main(argv):
    paths = [a for a in argv if a != "--train"]
    if not paths:
        print(__doc__)
        return 2
    rows = load(paths)
    env = [r for r in rows if kind_of(r) == "env"]
    if env:
        e = env[-1]
        print(f"torch {e.get('torch')}, CUDA {e.get('torch_cuda')}, cuDNN {e.get('cudnn')}, NCCL {e.get('nccl')}; "
              f"{e.get('device')}")
        if isinstance(e.get("sdpa"), dict):
            print(f"SDPA ({e.get('sdpa_device')}, bf16): " + ", ".join(f"{k} {v}" for k, v in e["sdpa"].items()))

    measured = {"train": {}, "unet": {}}
    for r in rows:
        kind = kind_of(r)
        if kind in measured and r.get("impl") != "env":
            key = (case_of(r, kind), r.get("phase", ""))
            measured[kind].setdefault(key, {})[r.get("run") or r.get("impl", "?")] = r
    table("training steps (s/step, peak GiB)", measured["train"])
    table("UNet forward+backward (s, peak GiB)", measured["unet"])

    ops = [r for r in rows if kind_of(r) == "ops" and "by_phase" in r]
    if ops:
        print("\nops and host syncs of one step (bench/step_ops)")
        for r in ops:
            phases = r["by_phase"]
            window = ("forward", "backward", "clip", "optimizer")
            syncs = sum(phases.get(p, {}).get("syncs", 0) for p in window)
            print(f"  {r.get('case')} on {r.get('device')} ({r.get('adamw_kernel')}): {r.get('ops_top_level')} top-level "
                  f"ops, everything else {r.get('everything_else', {}).get('top_level')}; syncs forward->optimizer "
                  f"{syncs}, after it {phases.get('after', {}).get('syncs')}; host reads forward->optimizer "
                  f"{r.get('host_reads_forward_to_optimizer')}")

    checks = [r for r in rows if kind_of(r) == "check"]
    if checks:
        print("\nchecks")
        skip = {"impl", "kind", "case", "run", "check", "ok", "required", "concurrent"}
        for r in checks:
            ok = r.get("ok")
            word = "ok  " if ok is True else "FAIL" if r.get("required", True) else "note"
            detail = ", ".join(f"{k} {json.dumps(v)}" for k, v in r.items() if k not in skip)
            print(f"  {word} {r.get('check')}: {detail}")

    status = [r for r in rows if kind_of(r) == "status"]
    if status:
        bad = [r for r in status if r.get("rc", 0) != 0 and not r.get("skipped")]
        skipped = [r for r in status if r.get("skipped")]
        print(f"\ncases: {len(status) - len(skipped)} ran, {len(bad)} failed, {len(skipped)} skipped")
        for r in bad:
            why = " (timed out or killed)" if r.get("rc") in (124, 137) else ""
            print(f"  FAIL {r.get('name')}: exit {r.get('rc')}{why} after {r.get('s')} s")
        for r in skipped:
            print(f"  SKIP {r.get('name')}: {r.get('skipped')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
