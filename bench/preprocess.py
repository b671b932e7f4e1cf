#!/usr/bin/env python3
"""Preprocessing benchmark: xltune's decode + salience crop + Lanczos resize against the
reference trainer's PIL pipeline doing the same work on the same files, in the same run. Prints
images/s of each and the ratio (above 1 means xltune is faster).

  bench/preprocess.py [--resolution 512] [--repeats 3] [--threads 1] [--scale 4]

Images: the sample photos of data/samples, enlarged --scale times with PIL and saved as JPEG
(quality 92), so that they are phone-sized (1.8 to 16 Mpx); made once under build/bench/preprocess.
Per image, both sides: decode to RGB (EXIF orientation applied), the centre of mass of a uniform
mask (the reference computes it for every image: numpy over every pixel), crop to the square,
LANCZOS resize of the crop and of the mask to RESOLUTION. PIL runs on one core; --threads sets
OpenCV's thread pool on the xltune side (default 1, a like-for-like comparison).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image, ImageOps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = ["astronaut", "camera", "chelsea", "coffee", "rocket", "hubble_deep_field"]


def make_images(workdir, scale):
    os.makedirs(workdir, exist_ok=True)
    files = []
    for name in SAMPLES:
        path = os.path.join(workdir, f"{name}_x{scale}.jpg")
        if not os.path.exists(path):
            image = Image.open(os.path.join(ROOT, "data", "samples", name + ".png")).convert("RGB")
            image = image.resize((image.width * scale, image.height * scale), Image.Resampling.BICUBIC)
            image.save(path + ".tmp.jpg", quality=92)
            os.replace(path + ".tmp.jpg", path)
        files.append(path)
    return files


# The reference trainer's steps (cog-sdxl preprocess.py), with EXIF orientation added so that
# both sides decode the same pixels.
def center_of_mass(mask):
    x, y = np.meshgrid(np.arange(mask.size[0]), np.arange(mask.size[1]))
    mask_np = np.array(mask) + 0.01
    return np.sum(x * mask_np) / np.sum(mask_np), np.sum(y * mask_np) / np.sum(mask_np)


def crop_to_square(image, com, resize_to):
    cx, cy = com
    width, height = image.size
    if width > height:
        left = min(max(cx - height / 2, 0), width - height)
        box = (left, 0, left + height, height)
    else:
        top = min(max(cy - width / 2, 0), height - width)
        box = (0, top, width, top + width)
    return image.crop(box).resize((resize_to, resize_to), Image.Resampling.LANCZOS)


def pil_pipeline(files, resolution):
    checksum = 0
    for f in files:
        image = ImageOps.exif_transpose(Image.open(f)).convert("RGB")
        mask = Image.new("L", image.size, 255)
        com = center_of_mass(mask)
        out = crop_to_square(image, com, resolution)
        m = crop_to_square(mask, com, resolution)
        checksum += out.getpixel((resolution // 2, resolution // 2))[0] + m.getpixel((0, 0))
    return checksum


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--bin", default=os.path.join(ROOT, "build", "bin", "xltune_bench_preprocess"))
    p.add_argument("--workdir", default=os.path.join(ROOT, "build", "bench", "preprocess"))
    args = p.parse_args()
    if not os.path.exists(args.bin):
        sys.exit(f"bench/preprocess.py: {args.bin} not found (build the benchmarks first)")
    files = make_images(args.workdir, args.scale)
    pixels = sum(Image.open(f).size[0] * Image.open(f).size[1] for f in files)

    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        pil_pipeline(files, args.resolution)
        best = min(best, time.perf_counter() - start)
    done = subprocess.run([args.bin, str(args.resolution), str(args.repeats), str(args.threads)] + files,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench/preprocess.py: {args.bin} failed: {done.stderr.strip()}")
    cpp = json.loads(done.stdout)
    n = len(files)
    print(f"preprocess: {n} JPEGs, {pixels / 1e6:.1f} Mpx in all, to {args.resolution}x{args.resolution}, "
          f"best of {args.repeats}")
    print(f"  PIL (reference pipeline, 1 core): {n / best:8.2f} images/s  ({best * 1000:.0f} ms)")
    print(f"  xltune ({args.threads} thread{'s' if args.threads != 1 else ''}):            "
          f"{n / cpp['seconds']:8.2f} images/s  ({cpp['seconds'] * 1000:.0f} ms)")
    print(f"  ratio PIL/xltune: {best / cpp['seconds']:.2f}x")


if __name__ == "__main__":
    main()
