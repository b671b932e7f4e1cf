#!/usr/bin/env python3
"""safetensors load benchmark: xltune's C++ reader against Python's safetensors.torch.load_file,
on the same 1 GiB file, in the same invocation. Prints each time and the ratio (Python / xltune:
above 1 means xltune is faster).

  bench/safetensors_load.py [--size-mib 1024] [--repeats 3] [--file PATH] [--bin build/bin/xltune_bench_safetensors]

The file holds about 1,300 tensors of UNet-like sizes (fp16 and fp32) so that per-tensor
overhead counts as it does for a real checkpoint (SDXL's UNet file has 1,680). Both sides are timed with the page cache warm (the
file was just written or read): this measures the reader, not the disk.
  open  : load_file() / load_safetensors(copy=false): tensors that view the mapped file
  clone : every tensor then copied into memory of its own (all bytes read)
"""
import argparse
import json
import os
import subprocess
import time

import torch
from safetensors.torch import load_file, save_file


def make_file(path, size_mib):
    g = torch.Generator().manual_seed(0)
    target = size_mib << 20
    # A UNet-like mix: many biases and norms, middling projections, a few large matrices.
    sizes = [320 * 320, 640 * 640, 1280 * 1280, 320, 640, 1280, 1280 * 10, 640 * 2048 // 4]
    tensors, total, i = {}, 0, 0
    while total < target:
        n = sizes[i % len(sizes)]
        dtype = torch.float16 if i % 3 else torch.float32
        n = min(n, max(1, (target - total) // (2 if dtype == torch.float16 else 4)))
        t = torch.empty(n, dtype=dtype)
        t.view(torch.int16 if dtype == torch.float16 else torch.int32).random_(-1000, 1000, generator=g)
        tensors[f"block.{i // 8}.layer.{i % 8}.weight"] = t
        total += t.nbytes
        i += 1
    save_file(tensors, path + ".tmp")
    os.replace(path + ".tmp", path)


def time_python(path, repeats):
    best_open = best_clone = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        views = load_file(path)
        best_open = min(best_open, time.perf_counter() - start)
        start = time.perf_counter()
        owned = {k: v.clone() for k, v in load_file(path).items()}
        best_clone = min(best_clone, time.perf_counter() - start)
    return best_open, best_clone, len(owned), sum(t.nbytes for t in owned.values())


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--file", default=os.path.join(root, "build", "bench", "load_1gib.safetensors"))
    p.add_argument("--bin", default=os.path.join(root, "build", "bin", "xltune_bench_safetensors"))
    args = p.parse_args()
    torch.set_num_threads(1)
    os.makedirs(os.path.dirname(args.file), exist_ok=True)
    if not os.path.exists(args.file) or abs(os.path.getsize(args.file) - (args.size_mib << 20)) > (1 << 20):
        print(f"writing {args.size_mib} MiB test file {args.file}")
        make_file(args.file, args.size_mib)
    with open(args.file, "rb") as f:  # warm the page cache for both sides alike
        while f.read(64 << 20):
            pass
    py_open, py_clone, n, nbytes = time_python(args.file, args.repeats)
    out = subprocess.run([args.bin, args.file, str(args.repeats)], check=True, capture_output=True, text=True).stdout
    cpp = {r["mode"]: r for r in map(json.loads, out.splitlines())}
    assert cpp["clone"]["tensors"] == n and cpp["clone"]["bytes"] == nbytes, (cpp, n, nbytes)
    print(f"file: {args.file}: {n} tensors, {nbytes / 2**30:.3f} GiB, best of {args.repeats}, page cache warm, 1 thread")
    for mode, py in (("open", py_open), ("clone", py_clone)):
        c = cpp[mode]["seconds"]
        rate = f"   xltune {nbytes / c / 2**30:6.2f} GiB/s" if mode == "clone" else ""
        print(f"{mode:6s} python safetensors {py * 1e3:9.1f} ms   xltune {c * 1e3:9.1f} ms   "
              f"ratio python/xltune {py / c:6.2f}x{rate}")


if __name__ == "__main__":
    main()
