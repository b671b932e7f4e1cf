#!/usr/bin/env python3
"""Joins xltune's and diffusers' GPU results by case and prints the ratios (diffusers / xltune).

  compare.py XLTUNE.jsonl DIFFUSERS.jsonl            UNet forward+backward cases
  compare.py --train XLTUNE.jsonl DIFFUSERS.jsonl    training-step cases (bench/gpu/diffusers_train.py)
"""
import json
import sys


def rows_of(paths, key):
    rows = {}
    for path in paths:
        try:
            lines = open(path).read().splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                rows.setdefault(key(r), {})[r["impl"]] = r
    return rows


def unet(paths):
    rows = rows_of(paths, lambda r: (r["batch"], r["latent"], r["checkpointing"]))
    print(f"{'image':>6} {'batch':>5} {'ckpt':>9} {'xltune ms':>10} {'diffusers ms':>13} {'ratio':>6} {'xltune GiB':>11} {'diffusers GiB':>14}")
    for (batch, latent, mode), r in sorted(rows.items()):
        x, d = r.get("xltune", {}), r.get("diffusers", {})
        ratio = d["ms"] / x["ms"] if "ms" in x and "ms" in d else float("nan")
        print(f"{latent * 8:>6} {batch:>5} {mode:>9} {x.get('ms', float('nan')):>10.1f} {d.get('ms', float('nan')):>13.1f} "
              f"{ratio:>6.2f} {x.get('peak_gib', float('nan')):>11.2f} {d.get('peak_gib', float('nan')):>14.2f}")


def train(paths):
    rows = rows_of(paths, lambda r: (r["mode"], r["resolution"], r["batch"], str(r["checkpointing"]).lower(), r["phase"]))
    print(f"{'mode':>5} {'image':>6} {'batch':>5} {'ckpt':>5} {'phase':>13} {'xltune ms':>10} {'diffusers ms':>13} "
          f"{'ratio':>6} {'xltune GiB':>11} {'diffusers GiB':>14}")
    nan = float("nan")
    for (mode, res, batch, ckpt, phase), r in sorted(rows.items()):
        x, d = r.get("xltune", {}), r.get("diffusers", {})
        ratio = d["ms"] / x["ms"] if "ms" in x and "ms" in d else nan
        print(f"{mode:>5} {res:>6} {batch:>5} {ckpt:>5} {phase:>13} {x.get('ms', nan):>10.1f} {d.get('ms', nan):>13.1f} "
              f"{ratio:>6.2f} {x.get('peak_bytes', nan) / 2**30:>11.2f} {d.get('peak_bytes', nan) / 2**30:>14.2f}")


if __name__ == "__main__":
    if sys.argv[1] == "--train":
        train(sys.argv[2:])
    else:
        unet(sys.argv[1:])
