#!/usr/bin/env python3
"""Checkpoints: xltune's coordinated checkpoint write and resume read against torch.save / torch.load
of the same state in Python, on the small preset; then the arithmetic for full-size SDXL on A40s.

  .venv/bin/python bench/checkpoint.py [--preset small] [--repeats 3] [--disk-gbps 2.0] [--workdir DIR]

For LoRA (rank 32, pivotal tuning) and full fine-tuning, `xltune train` runs 1 + REPEATS steps with a
checkpoint after every step (one rank, CPU). A checkpoint is what Note [Checkpoints] says: the
trainer state (weights, AdamW moments, step counts) in trainer.safetensors, the exported files of
the tar (lora.safetensors / the UNet, embeddings.pti, ...), every file written to a temporary
name, fsynced and renamed, then a manifest with every file's size and CRC-32C. xltune's figures
are its own: the manifest's write_seconds (first file opened to every file durable, the
checksums included), and the resume's "checked in / read in" (rank 0 verifies every checksum; the
read loads the state into the trainer).

The baseline holds the same tensors (all of the checkpoint's safetensors files, loaded into one
dict) and times torch.save to one file + fsync, and torch.load of it (the file is in the page
cache for both sides: these are serialisation costs, not the disk's). Best of REPEATS each.
Prints both times, the ratio torch/xltune (> 1: xltune is faster) and the bytes of each.
"""
import argparse
import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_util import best_of  # noqa: E402

KINDS = {
    "lora": ["--lora_rank", "32", "--lora_lr", "1e-4", "--ti_lr", "3e-4"],
    "full": ["--is_lora", "false", "--unet_learning_rate", "1e-6", "--save_dtype", "fp32"],
}


def photos(path):
    from PIL import Image
    samples = os.path.join(ROOT, "data", "samples")
    with zipfile.ZipFile(path, "w") as z:
        for name in sorted(os.listdir(samples))[:4]:
            buf = io.BytesIO()
            Image.open(os.path.join(samples, name)).convert("RGB").resize((256, 256)).save(buf, "JPEG")
            z.writestr(name.rsplit(".", 1)[0] + ".jpg", buf.getvalue())


def run_xltune(xltune, model, zip_path, out, kind, steps, extra=()):
    cmd = [xltune, "train", "--model", model, "--input_images", zip_path, "--output_dir", out, "--resolution", "256",
           "--train_batch_size", "1", "--max_train_steps", str(steps), "--checkpointing_steps", "1",
           "--checkpoints_total_limit", "0", "--threads", "2", "--seed", "1", "--log_every", "1000", *KINDS[kind],
           *extra]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"xltune train failed ({' '.join(cmd)}):\n{r.stderr[-3000:]}")
    return r.stderr


def checkpoint_dirs(out):
    root = os.path.join(out, "checkpoints")
    return sorted(os.path.join(root, d) for d in os.listdir(root) if d.startswith("step-"))


def torch_side(ckpt_dir, repeats, scratch):
    import torch
    from safetensors.torch import load_file
    torch.set_num_threads(2)
    state = {}
    for name in sorted(os.listdir(ckpt_dir)):
        if name.endswith(".safetensors") or name.endswith(".pti"):
            for k, v in load_file(os.path.join(ckpt_dir, name)).items():
                state[f"{name}/{k}"] = v
    path = os.path.join(scratch, "state.pt")

    def save():
        with open(path + ".tmp", "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)

    def load():
        torch.load(path, weights_only=True)

    write = best_of(repeats, save)
    read = best_of(repeats, load)
    return write, read, os.path.getsize(path), sum(v.numel() for v in state.values())


def arithmetic(disk_gbps):
    """Bytes each rank writes per checkpoint for full-size SDXL, and seconds at the stated bandwidth."""
    lora = 32 * 1_451_520          # rank 32 on the 560 attention linears (sdxl.md, calc)
    rows = 2 * (768 + 1280)        # two new token rows in each text encoder
    unet = 2_567_463_684           # all UNet parameters (sdxl.md, calc)
    trained = 2_547_000_000        # full fine-tuning trains all but norms and time embeddings
    gb = 1e9
    print(f"\nSDXL on A40 nodes: bytes per checkpoint and seconds at {disk_gbps:.1f} GB/s per node "
          "(the node's ranks share it; 8 GPUs a node)")
    lora_bytes = lora * (4 + 8) + lora * 2 + rows * (4 + 8 + 4)  # fp32 weights + m, v; bf16 export; rows
    print(f"  LoRA rank 32 + PTI: rank 0 writes {lora_bytes / gb:.2f} GB (trainer state 12 B/param, export 2 B/param), "
          f"others nothing: {lora_bytes / gb / disk_gbps:.1f} s at any rank count")
    print("  full fine-tuning (weights fp32 4 B + export bf16 2 B on rank 0; AdamW moments sharded by ZeRO-1):")
    print("    ranks   moments   rank 0 GB   other ranks GB   node GB   seconds")
    for dtype, per in (("fp32", 8), ("bf16", 4)):
        for n in (1, 2, 4, 8):
            shard = trained * per / n
            rank0 = trained * 4 + unet * 2 + shard
            node = rank0 + shard * (n - 1)
            print(f"    {n:5d}   {dtype:7s}   {rank0 / gb:9.2f}   {shard / gb if n > 1 else 0:14.2f}   {node / gb:7.2f}"
                  f"   {node / gb / disk_gbps:7.1f}")
    print("  (a 1000-step run checkpointing every 200 steps writes 5 checkpoints; 2 are kept)")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--disk-gbps", type=float, default=2.0, help="a node's write bandwidth for the arithmetic")
    p.add_argument("--xltune", default=os.path.join(ROOT, "build", "bin", "xltune"))
    p.add_argument("--workdir", default=os.path.join(ROOT, "build", "bench-checkpoint"))
    a = p.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    model = os.path.join(a.workdir, a.preset)
    if not os.path.isdir(model):
        subprocess.run([a.xltune, "init-model", "--preset", a.preset, "--out", model], check=True,
                       stdout=subprocess.DEVNULL)
    zip_path = os.path.join(a.workdir, "photos.zip")
    photos(zip_path)
    print(f"{a.preset} preset, 1 rank, CPU, best of {a.repeats}")
    print(f"{'':5s} {'params':>10s} {'xltune write':>13s} {'torch.save':>11s} {'ratio':>6s} {'xltune read':>12s} "
          f"{'torch.load':>11s} {'ratio':>6s} {'xltune MB':>10s} {'torch MB':>9s}")
    for kind in KINDS:
        out = os.path.join(a.workdir, f"out-{kind}")
        subprocess.run(["rm", "-rf", out], check=True)
        steps = 1 + a.repeats
        run_xltune(a.xltune, model, zip_path, out, kind, steps)
        dirs = checkpoint_dirs(out)[1:]  # the first checkpoint also warms the page cache and allocator
        manifests = [json.load(open(os.path.join(d, "manifest.json"))) for d in dirs]
        write = min(m["write_seconds"] for m in manifests)
        ours_bytes = max(sum(f["bytes"] for f in m["files"]) for m in manifests)
        reads = []
        for k in range(a.repeats):  # raise the step count by one: each run resumes from the last checkpoint
            log = run_xltune(a.xltune, model, zip_path, out, kind, steps + 1 + k, ["--resume", "auto"])
            m = re.search(r"checked in ([0-9.]+) s, read in ([0-9.]+) s", log)
            if not m:
                sys.exit(f"no resume timing in the log:\n{log[-2000:]}")
            reads.append((float(m.group(1)) + float(m.group(2)), float(m.group(1)), float(m.group(2))))
        t_write, t_read, t_bytes, params = torch_side(dirs[-1], a.repeats, a.workdir)
        read, checked, loaded = min(reads)
        print(f"{kind:5s} {params / 1e6:9.1f}M {write:12.3f}s {t_write:10.3f}s {t_write / write:5.2f}x "
              f"{read:11.3f}s {t_read:10.3f}s {t_read / read:5.2f}x {ours_bytes / 1e6:10.1f} "
              f"{t_bytes / 1e6:9.1f}   (read: checksums {checked:.3f}s + load {loaded:.3f}s)")
    print("xltune write: every file fsynced + CRC-32C + manifest; read: checksums verified + state loaded into "
          "the trainer; torch: one file, fsynced / loaded (weights_only)")
    arithmetic(a.disk_gbps)


if __name__ == "__main__":
    main()
