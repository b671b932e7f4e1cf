#!/usr/bin/env python3
"""Bit-exact safetensors interop between Python's `safetensors` and xltune's C++ reader/writer.

  safetensors_interop.py write DIR   Python writes files for the C++ side to read:
      py_all_dtypes.safetensors (+ .manifest.json), py_metadata.safetensors (+ manifest),
      sharded/ (model-0000k-of-0000n.safetensors + model.safetensors.index.json, by huggingface_hub)
  safetensors_interop.py check DIR   Python reads what the C++ side wrote (cpp_*.safetensors) and
      checks every byte, the metadata, and that Python's own writer makes the identical file.

Tensor contents follow one rule that both sides compute on their own:
  byte k of tensor with seed s = (k*131 + s*17 + 7) mod 256   (BOOL: that mod 2)
so the test needs no stored expected values and every bit pattern of every dtype is exercised.
"""
import json
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save, save_file

DTYPES = {  # every dtype that Python's safetensors maps to torch
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "F8_E4M3FNUZ": torch.float8_e4m3fnuz, "F8_E5M2FNUZ": torch.float8_e5m2fnuz, "C64": torch.complex64,
    "U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16,
}
SHAPES = [[3, 5], [7], [2, 3, 4], [], [0], [2, 0, 3], [1, 1, 1, 9]]


def pattern(dtype_name, shape, seed):
    dtype = DTYPES[dtype_name]
    n = 1
    for d in shape:
        n *= d
    nbytes = n * torch.empty((), dtype=dtype).element_size()
    data = bytearray(((k * 131 + seed * 17 + 7) & 0xFF) for k in range(nbytes))
    if dtype_name == "BOOL":
        data = bytearray(b & 1 for b in data)
    if nbytes == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(data, dtype=dtype).reshape(shape).clone()


def raw(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def spec():
    """(name, dtype, shape, seed) for each tensor: every dtype, and every shape over a few dtypes."""
    out = []
    seed = 0
    for i, name in enumerate(DTYPES):
        out.append((f"t.{name.lower()}", name, SHAPES[i % 3], seed)); seed += 1
    for i, shape in enumerate(SHAPES):
        dt = ["F32", "BF16", "I64", "U8"][i % 4]
        out.append((f"shape{i}.{dt.lower()}", dt, shape, seed)); seed += 1
    out.append(("unicode.名前.ü", "F16", [4], seed))
    return out


def write_manifest(path, tensors, metadata):
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"tensors": [{"name": n, "dtype": d, "shape": s, "seed": k} for n, d, s, k in tensors],
                   "metadata": metadata}, f, ensure_ascii=False)


def write(outdir):
    os.makedirs(outdir, exist_ok=True)
    tensors = spec()
    state = {n: pattern(d, s, k) for n, d, s, k in tensors}
    # One metadata key: Python's writer then has one possible byte layout, which C++ must match.
    meta = {"format": "pt"}
    save_file(state, os.path.join(outdir, "py_all_dtypes.safetensors"), metadata=meta)
    write_manifest(os.path.join(outdir, "py_all_dtypes.manifest.json"), tensors, meta)

    small = tensors[:3]
    meta2 = {"format": "pt", "note": "ünïcödé ✓ 名前", "empty": "", "quote": "a \"q\" \\ b\n"}
    save_file({n: pattern(d, s, k) for n, d, s, k in small}, os.path.join(outdir, "py_metadata.safetensors"),
              metadata=meta2)
    write_manifest(os.path.join(outdir, "py_metadata.manifest.json"), small, meta2)

    # A sharded model as the Hugging Face libraries write one.
    from huggingface_hub import save_torch_state_dict
    shard_dir = os.path.join(outdir, "sharded")
    os.makedirs(shard_dir, exist_ok=True)
    big = [(f"layer{i}.weight", "F32", [64, 16], 100 + i) for i in range(6)]
    save_torch_state_dict({n: pattern(d, s, k) for n, d, s, k in big}, shard_dir, max_shard_size="10KB")
    write_manifest(os.path.join(shard_dir, "manifest.json"), big, {})
    shards = [f for f in os.listdir(shard_dir) if f.endswith(".safetensors")]
    assert len(shards) >= 2, f"expected several shards, got {shards}"
    print(f"wrote {len(tensors)} tensors ({len(DTYPES)} dtypes), metadata file, {len(shards)} shards to {outdir}")


def check(outdir):
    failures = []
    for base in ("cpp_all_dtypes", "cpp_metadata"):
        path = os.path.join(outdir, base + ".safetensors")
        with open(os.path.join(outdir, base + ".manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        loaded = load_file(path)
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
        if metadata != manifest["metadata"]:
            failures.append(f"{base}: metadata {metadata!r} != {manifest['metadata']!r}")
        names = [t["name"] for t in manifest["tensors"]]
        if sorted(loaded) != sorted(names):
            failures.append(f"{base}: names {sorted(loaded)} != {sorted(names)}")
        for t in manifest["tensors"]:
            want = pattern(t["dtype"], t["shape"], t["seed"])
            got = loaded.get(t["name"])
            if got is None:
                continue
            if got.dtype != want.dtype or list(got.shape) != t["shape"] or raw(got) != raw(want):
                failures.append(f"{base}: tensor {t['name']} differs ({got.dtype} {list(got.shape)})")
        # Python's writer, given the same tensors, must produce the identical bytes (one metadata
        # key or none, so that Python's own key order cannot differ).
        if len(manifest["metadata"]) <= 1:
            ours = open(path, "rb").read()
            theirs = save({t["name"]: pattern(t["dtype"], t["shape"], t["seed"]) for t in manifest["tensors"]},
                          metadata=manifest["metadata"] or None)
            if ours != theirs:
                failures.append(f"{base}: C++ bytes differ from Python's writer ({len(ours)} vs {len(theirs)} bytes)")
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print("python read every tensor written by C++ bit-exactly; writers agree byte for byte")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "check"):
        sys.exit(__doc__)
    (write if sys.argv[1] == "write" else check)(sys.argv[2])
