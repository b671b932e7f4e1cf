#!/usr/bin/env python3
"""Reads the shard set that the C++ test ShardsInterop.WriteForPython wrote, with h5py (and
h5dump when installed), and checks every field against the JSON it wrote beside it.

  check_shards.py DIR      DIR holds set/ (the shards and index.json) and expected.json

Pixels follow the rule the C++ test used, recomputed here:
  image[y, x, c] = (x*7 + y*13 + c*101 + seed*31) mod 256     mask[y, x] = (x*3 + y*5 + seed) mod 256
"""
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np


def fail(message):
    sys.exit(f"check_shards.py: {message}")


def main():
    if len(sys.argv) != 2:
        fail("usage: check_shards.py DIR")
    root = sys.argv[1]
    set_dir = os.path.join(root, "set")
    with open(os.path.join(root, "expected.json")) as f:
        expected = json.load(f)
    with open(os.path.join(set_dir, "index.json")) as f:
        index = json.load(f)
    r = expected["resolution"]
    for key, want in [("format", "xltune-shards"), ("version", 1), ("resolution", r),
                      ("token_string", expected["token_string"]), ("special_tokens", expected["special_tokens"]),
                      ("num_samples", len(expected["samples"]))]:
        if index[key] != want:
            fail(f"index.json: {key} is {index[key]!r}, expected {want!r}")

    ys, xs = np.mgrid[0:r, 0:r]
    checked = 0
    for shard in index["shards"]:
        path = os.path.join(set_dir, shard["file"])
        if os.path.getsize(path) != shard["bytes"]:
            fail(f"{path}: size differs from the index")
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            for key, want in [("format", "xltune-shards"), ("format_version", 1), ("resolution", r),
                              ("token_string", expected["token_string"]), ("special_tokens", expected["special_tokens"]),
                              ("num_samples", shard["samples"]), ("first_sample", shard["first_sample"])]:
                if attrs[key] != want:
                    fail(f"{path}: attribute {key} is {attrs[key]!r}, expected {want!r}")
            n = shard["samples"]
            images, masks = f["images"], f["masks"]
            if images.shape != (n, r, r, 3) or images.dtype != np.uint8 or images.chunks != (1, r, r, 3):
                fail(f"{path}: /images is {images.shape} {images.dtype} chunks {images.chunks}")
            if masks.shape != (n, r, r) or masks.chunks != (1, r, r):
                fail(f"{path}: /masks is {masks.shape} chunks {masks.chunks}")
            captions = f["captions"].asstr()[...]
            sources = f["source_names"].asstr()[...]
            sizes, corners = f["original_sizes"][...], f["crop_top_left"][...]
            if sizes.dtype != np.int32 or sizes.shape != (n, 2) or corners.shape != (n, 2):
                fail(f"{path}: size fields have the wrong type or shape")
            for row in range(n):
                want = expected["samples"][shard["first_sample"] + row]
                seed = want["seed"]
                image = np.stack([(xs * 7 + ys * 13 + c * 101 + seed * 31) % 256 for c in range(3)], axis=-1).astype(np.uint8)
                mask = ((xs * 3 + ys * 5 + seed) % 256).astype(np.uint8)
                if not np.array_equal(images[row], image):
                    fail(f"{path}: image of sample {seed} differs")
                if not np.array_equal(masks[row], mask):
                    fail(f"{path}: mask of sample {seed} differs")
                if captions[row] != want["caption"] or sources[row] != want["source"]:
                    fail(f"{path}: sample {seed}: caption/source {captions[row]!r}/{sources[row]!r}, "
                         f"expected {want['caption']!r}/{want['source']!r}")
                if list(sizes[row]) != want["original_size"] or list(corners[row]) != want["crop_top_left"]:
                    fail(f"{path}: sample {seed}: sizes {list(sizes[row])} {list(corners[row])}")
                checked += 1
        if shutil.which("h5dump"):
            done = subprocess.run(["h5dump", "-A", path], capture_output=True, text=True)
            if done.returncode != 0 or "xltune-shards" not in done.stdout:
                fail(f"h5dump -A {path} failed: {done.stderr.strip()}")
    if checked != len(expected["samples"]):
        fail(f"checked {checked} samples, expected {len(expected['samples'])}")
    print(f"check_shards.py: {checked} samples in {len(index['shards'])} shards match, every field"
          + (" (h5dump reads them too)" if shutil.which("h5dump") else ""))


if __name__ == "__main__":
    main()
