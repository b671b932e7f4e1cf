#!/usr/bin/env python3
"""Joins xltune's and diffusers' GPU results by case and prints the ratios (diffusers / xltune)."""
import json
import sys

rows = {}
for path in sys.argv[1:]:
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            rows.setdefault((r["batch"], r["latent"], r["checkpointing"]), {})[r["impl"]] = r
print(f"{'image':>6} {'batch':>5} {'ckpt':>9} {'xltune ms':>10} {'diffusers ms':>13} {'ratio':>6} {'xltune GiB':>11} {'diffusers GiB':>14}")
for (batch, latent, mode), r in sorted(rows.items()):
    x, d = r.get("xltune", {}), r.get("diffusers", {})
    ratio = d["ms"] / x["ms"] if "ms" in x and "ms" in d else float("nan")
    print(f"{latent * 8:>6} {batch:>5} {mode:>9} {x.get('ms', float('nan')):>10.1f} {d.get('ms', float('nan')):>13.1f} "
          f"{ratio:>6.2f} {x.get('peak_gib', float('nan')):>11.2f} {d.get('peak_gib', float('nan')):>14.2f}")
