"""Pillow's Image.resize on a grid of sizes, for tests/core/pil_resample_test.cc and
tests/data/resize_test.cc: every PIL-exact resize in xltune (core/pil_resample.h, its OpenCV face
data/lanczos_resize.h, and through them the preprocessing models' image processors, the training
crops, the CLIPSeg mask back to the photo, generate's img2img and inpainting inputs) is checked
here against the Pillow that launch/requirements.txt pins.

The grid: portrait, landscape and square inputs and outputs, upscaling and downscaling (each
axis either way, so both of Pillow 13's pass orders), integer and non-integer factors, odd
sizes, one-pixel sides and unchanged axes; bilinear, bicubic and Lanczos; 1 and 3 channels.
Pixels are seeded noise over a gradient, so that every weight of every kernel shows.

Beside it, "thumbnail" cases: crops of a sample photo through Pillow's Lanczos to the contact
sheet's 192 px thumbnails (data/contact_sheet.h).

usage: make_resize_grid.py OUT_DIR SAMPLES_DIR   (writes grid.safetensors and grid.json)
"""
import itertools
import json
import os
import sys

import numpy as np
import PIL
import torch
from PIL import Image
from safetensors.torch import save_file

IN_SIZES = [(1, 1), (1, 9), (9, 1), (11, 16), (13, 21), (21, 13), (48, 48), (64, 100), (72, 96), (72, 100),
            (90, 120), (100, 72), (120, 90), (97, 97), (130, 200), (200, 451), (451, 200)]
OUT_SIZES = [(1, 1), (1, 5), (5, 1), (24, 24), (48, 48), (72, 100), (100, 72), (96, 96)]
# Factors of exactly 2 and 3 both ways, one axis unchanged, and the processors' real sizes.
EXTRA = [((96, 96), (48, 48)), ((48, 48), (96, 96)), ((100, 72), (50, 36)), ((72, 100), (216, 300)),
         ((48, 100), (48, 48)), ((100, 48), (48, 48)), ((48, 48), (48, 100)), ((451, 200), (352, 352)),
         ((200, 451), (352, 352)), ((352, 352), (72, 100)), ((352, 352), (100, 72)), ((130, 200), (384, 384)),
         ((640, 427), (64, 64))]
FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
THUMB_SIZES = [(64, 64), (200, 200), (512, 512), (100, 72), (72, 100)]
THUMB = 192


def pixels(w, h, channels, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (xx * 255 // max(1, w - 1) + yy * 127 // max(1, h - 1)) % 256
    noise = rng.integers(-60, 61, size=(h, w, channels))
    return np.clip(base[..., None] + noise, 0, 255).astype(np.uint8)


def as_image(a):
    return Image.fromarray(a[..., 0] if a.shape[2] == 1 else a, "L" if a.shape[2] == 1 else "RGB")


def as_array(im, channels):
    a = np.asarray(im)
    return a.reshape(a.shape[0], a.shape[1], channels)


def main():
    out, samples = sys.argv[1:3]
    photo = Image.open(os.path.join(samples, "astronaut.png")).convert("RGB")
    os.makedirs(out, exist_ok=True)
    tensors, cases = {}, []
    inputs = {}
    pairs = list(itertools.product(IN_SIZES, OUT_SIZES)) + EXTRA
    for (w, h), _ in pairs:
        for c in (1, 3):
            key = f"in.{w}x{h}x{c}"
            if key not in inputs:
                inputs[key] = pixels(w, h, c, seed=w * 1000 + h * 10 + c)
                tensors[key] = torch.from_numpy(inputs[key].copy())
    for ((w, h), (ow, oh)), (fname, f), c in itertools.product(pairs, FILTERS.items(), (1, 3)):
        src = inputs[f"in.{w}x{h}x{c}"]
        key = f"out.{w}x{h}x{c}.{ow}x{oh}.{fname}"
        tensors[key] = torch.from_numpy(as_array(as_image(src).resize((ow, oh), f), c).copy())
        cases.append(dict(input=f"in.{w}x{h}x{c}", output=key, width=w, height=h, channels=c, out_width=ow,
                          out_height=oh, filter=fname))
    thumbs = []
    for (w, h) in THUMB_SIZES:
        for c in (1, 3):
            key = f"photo.{w}x{h}x{c}"
            crop = photo.crop((0, 0, w, h)) if c == 3 else photo.crop((0, 0, w, h)).convert("L")
            inputs[key] = as_array(crop, c)
            tensors[key] = torch.from_numpy(inputs[key].copy())
            okey = f"thumb.{w}x{h}x{c}"
            # Within a THUMB square, keeping the shape (contact_sheet.cc, Note [Aspect buckets]).
            tw = THUMB if w >= h else max(1, (THUMB * w + h // 2) // h)
            th = THUMB if h >= w else max(1, (THUMB * h + w // 2) // w)
            tensors[okey] = torch.from_numpy(as_array(as_image(inputs[key]).resize((tw, th), Image.LANCZOS), c).copy())
            thumbs.append(dict(input=key, output=okey, width=w, height=h, channels=c, out_width=tw, out_height=th))
    save_file(tensors, os.path.join(out, "grid.safetensors"))
    with open(os.path.join(out, "grid.json"), "w") as fh:
        json.dump(dict(pillow=PIL.__version__, cases=cases, thumbnails=thumbs), fh, indent=0)
    print(f"Pillow {PIL.__version__}: {len(cases)} resizes, {len(thumbs)} thumbnails")


if __name__ == "__main__":
    main()
