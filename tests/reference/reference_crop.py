#!/usr/bin/env python3
"""The reference trainer's crop, transcribed, for xltune's crop tests (tests/data/crop_test.cc).

  reference_crop.py OUT_DIR [--resolution 256]

For each sample photo in data/samples/ and a set of masks made here (uniform, Gaussian blobs,
a dot near a corner, seeded noise, a face-like ellipse), this script runs the crop logic of
replicate/cog-sdxl preprocess.py (main @ c79cb3c) as written there, with PIL and numpy:

  _center_of_mass(mask)            x, y = meshgrid; (mask + 0.01)-weighted mean of x and y
  _crop_to_square(image, com)      side min(w, h); landscape left = min(max(cx - h/2, 0), w - h),
                                   portrait top = min(max(cy - w/2, 0), h - w); PIL crop (which
                                   rounds each edge with Python's round) then LANCZOS to R x R
  centre crop                      com = (w/2, h/2) when crop_based_on_salience is false

It writes OUT_DIR/masks/*.png, OUT_DIR/expected/*.png (the reference's resized image and mask)
and OUT_DIR/crop_cases.json. Beside the literal (float) result each case also has the exact
box, computed with fractions: the C++ side must equal the exact box always, and the literal box
except where numpy's float sum lands on the other side of a .5 ("tie": true).
"""
import argparse
import json
import os
import sys
from fractions import Fraction

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLES = ["astronaut", "camera", "chelsea", "coffee", "rocket", "hubble_deep_field"]


# --- transcribed from cog-sdxl preprocess.py -----------------------------------------------
def _crop_to_square(image, com, resize_to=None):
    cx, cy = com
    width, height = image.size
    if width > height:
        left_possible = max(cx - height / 2, 0)
        left = min(left_possible, width - height)
        right = left + height
        top = 0
        bottom = height
    else:
        left = 0
        right = width
        top_possible = max(cy - width / 2, 0)
        top = min(top_possible, height - width)
        bottom = top + width

    image = image.crop((left, top, right, bottom))

    if resize_to:
        image = image.resize((resize_to, resize_to), Image.Resampling.LANCZOS)

    return image, (left, top, right, bottom)


def _center_of_mass(mask):
    x, y = np.meshgrid(np.arange(mask.size[0]), np.arange(mask.size[1]))
    mask_np = np.array(mask) + 0.01
    x_ = x * mask_np
    y_ = y * mask_np

    x = np.sum(x_) / np.sum(mask_np)
    y = np.sum(y_) / np.sum(mask_np)

    return x, y
# -------------------------------------------------------------------------------------------


def exact_box(mask_np, width, height, salience):
    """The same rule in exact fractions; returns (left, top, side) after round-half-even."""
    if salience:
        m = mask_np.astype(np.int64)
        ys, xs = np.indices(m.shape)
        den = 100 * int(m.sum()) + m.size
        cx = Fraction(100 * int((xs * m).sum()) + int(xs.sum()), den)
        cy = Fraction(100 * int((ys * m).sum()) + int(ys.sum()), den)
    else:
        cx, cy = Fraction(width, 2), Fraction(height, 2)
    side = min(width, height)
    if width > height:
        return round(min(max(cx - Fraction(height, 2), 0), width - height)), 0, side
    return 0, round(min(max(cy - Fraction(width, 2), 0), height - width)), side


def near_half(value):
    return abs((value % 1) - 0.5) < 1e-6


def masks_for(width, height):
    """Deterministic masks of the image's size: (name, uint8 array)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    out = [("uniform", np.full((height, width), 255, np.uint8)),
           ("zero", np.zeros((height, width), np.uint8))]
    for k, (fx, fy, s) in enumerate([(0.2, 0.3, 0.08), (0.85, 0.7, 0.15), (0.5, 0.1, 0.3)]):
        blob = 255 * np.exp(-(((xs - fx * width) ** 2 + (ys - fy * height) ** 2) / (2 * (s * max(width, height)) ** 2)))
        out.append((f"blob{k}", np.clip(np.round(blob), 0, 255).astype(np.uint8)))
    dot = np.zeros((height, width), np.uint8)
    dot[height - 3:, width - 3:] = 255
    out.append(("dot", dot))
    rng = np.random.default_rng(width * 1000 + height)
    out.append(("noise", rng.integers(0, 256, size=(height, width), dtype=np.uint8)))
    ellipse = np.where(((xs - 0.3 * width) / (0.12 * width)) ** 2 + ((ys - 0.4 * height) / (0.18 * height)) ** 2 <= 1,
                       255, 50).astype(np.uint8)
    out.append(("face", ellipse))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--resolution", type=int, default=256)
    args = p.parse_args()
    os.makedirs(os.path.join(args.out_dir, "masks"), exist_ok=True)
    os.makedirs(os.path.join(args.out_dir, "expected"), exist_ok=True)
    cases = []
    for sample in SAMPLES:
        image_path = os.path.join(ROOT, "data", "samples", sample + ".png")
        if not os.path.exists(image_path):
            sys.exit(f"reference_crop.py: {image_path} is missing (run launch/fetch-data)")
        image = Image.open(image_path).convert("RGB")
        width, height = image.size
        variants = [(name, m, True) for name, m in masks_for(width, height)] + [("centre", None, False)]
        for name, mask_np, salience in variants:
            case = f"{sample}-{name}"
            mask = Image.fromarray(mask_np if mask_np is not None else np.full((height, width), 255, np.uint8), "L")
            mask_file = os.path.join("masks", case + ".png")
            mask.save(os.path.join(args.out_dir, mask_file))
            com = _center_of_mass(mask) if salience else (width / 2, height / 2)
            cropped, box = _crop_to_square(image, com, resize_to=args.resolution)
            cropped_mask, _ = _crop_to_square(mask, com, resize_to=args.resolution)
            pil_box = [int(round(v)) for v in box]  # what PIL's crop used
            cropped.save(os.path.join(args.out_dir, "expected", case + ".image.png"))
            cropped_mask.save(os.path.join(args.out_dir, "expected", case + ".mask.png"))
            left, top, side = exact_box(np.array(mask), width, height, salience)
            cases.append({
                "case": case, "image": image_path, "mask": mask_file, "salience": salience,
                "width": width, "height": height, "com": [float(com[0]), float(com[1])],
                "pil_box": pil_box, "exact_box": [left, top, side],
                "tie": bool(near_half(box[0]) or near_half(box[1])),
                "expected_image": os.path.join("expected", case + ".image.png"),
                "expected_mask": os.path.join("expected", case + ".mask.png"),
            })
    with open(os.path.join(args.out_dir, "crop_cases.json.tmp"), "w") as f:
        json.dump({"resolution": args.resolution, "cases": cases}, f, indent=1)
    os.replace(os.path.join(args.out_dir, "crop_cases.json.tmp"), os.path.join(args.out_dir, "crop_cases.json"))
    ties = sum(c["tie"] for c in cases)
    mismatched = sum(c["pil_box"][:2] != c["exact_box"][:2] for c in cases)
    print(f"reference_crop.py: {len(cases)} cases ({ties} at a .5 tie, {mismatched} where numpy's float rounding "
          f"moves the corner) in {args.out_dir}")


if __name__ == "__main__":
    main()
