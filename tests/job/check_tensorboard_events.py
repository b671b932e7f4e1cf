#!/usr/bin/env python3
"""Reads xltune's TensorBoard event files with the tensorboard package's own reader
(EventAccumulator, which checks every record's CRCs) and checks what it finds.

    check_tensorboard_events.py unit DIR         the files of TensorBoardInterop.WritesWhatTensorBoardReads
    check_tensorboard_events.py run OUTPUT_DIR   a training run's OUTPUT_DIR/logs against its metrics.jsonl
                                                 (and its validation grids in OUTPUT_DIR/samples, if any)
"""
import io
import json
import os
import sys

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator as ea


def load(logdir):
    names = [n for n in os.listdir(logdir) if n.startswith("events.out.tfevents.")]
    assert names, f"no event file in {logdir}"
    acc = ea.EventAccumulator(logdir, size_guidance={ea.SCALARS: 0, ea.IMAGES: 0})  # 0: keep every event
    acc.Reload()
    return acc


def f32(x):
    return float(np.float32(x))


def series(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def check_unit(logdir):
    acc = load(logdir)
    tags = acc.Tags()
    assert sorted(tags["scalars"]) == ["epoch", "loss", "lr/lora", "lr/text_embeddings", "validation_loss"], tags
    # Steps 1 and 2 from the first file; 3 and 4 from the resumed run's, whose losses are 0.9/step.
    want_loss = [(1, f32(1.0)), (2, f32(0.5)), (3, f32(0.9 / 3)), (4, f32(0.9 / 4))]
    assert series(acc, "loss") == want_loss, series(acc, "loss")
    assert series(acc, "lr/lora") == [(s, f32(1e-4 * s)) for s in (1, 2, 3, 4)], series(acc, "lr/lora")
    assert series(acc, "lr/text_embeddings") == [(s, f32(3e-4)) for s in (1, 2, 3, 4)]
    assert series(acc, "epoch") == [(1, 0.0), (2, 0.0), (3, 1.0), (4, 1.0)], series(acc, "epoch")
    assert series(acc, "validation_loss") == [(2, f32(0.1))], series(acc, "validation_loss")
    assert tags["images"] == ["validation"], tags
    [image] = acc.Images("validation")
    assert (image.step, image.width, image.height) == (2, 3, 2), image
    pixels = np.array(Image.open(io.BytesIO(image.encoded_image_string)))
    want = np.array([[[50 * r + 10 * c, 200 - 50 * r - 10 * c, 7] for c in range(3)] for r in range(2)], np.uint8)
    assert np.array_equal(pixels, want), pixels
    print("ok   tensorboard reads 4 steps of loss, learning rates and epoch over a resume, a scalar by tag and "
          "a 3x2 image")


def check_run(out):
    acc = load(os.path.join(out, "logs"))
    metrics = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    steps = [m["step"] for m in metrics]
    assert series(acc, "loss") == [(m["step"], f32(m["loss"])) for m in metrics], (series(acc, "loss"), metrics)
    for name in metrics[0]["lr"]:
        assert series(acc, f"lr/{name}") == [(m["step"], f32(m["lr"][name])) for m in metrics], name
    for key in ("grad_norm", "samples_per_s"):
        assert series(acc, key) == [(m["step"], f32(m[key])) for m in metrics], key
    samples = os.path.join(out, "samples")
    grids = sorted(os.listdir(samples)) if os.path.isdir(samples) else []
    images = acc.Images("validation") if grids else []
    assert [f"step-{e.step:06d}.png" for e in images] == grids, (grids, [e.step for e in images])
    for e, name in zip(images, grids):
        with open(os.path.join(samples, name), "rb") as f:
            assert e.encoded_image_string == f.read(), f"the image of step {e.step} is not {name}"
        assert (e.width, e.height) == Image.open(os.path.join(samples, name)).size
    print(f"ok   tensorboard reads steps {steps[0]}..{steps[-1]} of metrics.jsonl (loss, learning rates, grad norm, "
          f"samples/s) and {len(images)} validation grids")


if __name__ == "__main__":
    {"unit": check_unit, "run": check_run}[sys.argv[1]](sys.argv[2])
