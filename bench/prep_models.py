"""The preprocessing models of xltune against transformers on the CPU: seconds per image.

  .venv/bin/python bench/prep_models.py [--threads 2] [--workdir DIR]

CLIPSeg at full size (CIDAS/clipseg-rd64-refined's config, random weights: no download), one
sample photo, the reference's mask ([prompt, ""] at 352 px, softmax, resize back). Each side in
its own process with the same threads; timed: the mask computation alone (model loading
excluded), best of 3 after a warm-up. Prints both and the ratio transformers/xltune (> 1: xltune
is faster). BLIP and Swin2SR are not in xltune yet.
"""
import argparse
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTO = os.path.join(ROOT, "data", "samples", "chelsea.png")


def make_full_clipseg(d):
    import shutil
    import torch
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, ViTImageProcessor
    sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
    from make_clipseg_models import FULL, IMAGENET
    torch.manual_seed(0)
    model = CLIPSegForImageSegmentation(CLIPSegConfig(text_config=FULL["text"], vision_config=FULL["vision"],
                                                      **FULL["top"])).eval()
    model.save_pretrained(d, safe_serialization=True)
    ViTImageProcessor(size={"height": 352, "width": 352}, resample=2, **IMAGENET).save_pretrained(d)
    tok = os.path.join(ROOT, "build", "testdata", "clip", "tokenizers", "tokenizer")
    for f in ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok, f), d)


def transformers_side(d, threads):
    import torch
    from PIL import Image
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor
    torch.set_num_threads(threads)
    model = CLIPSegForImageSegmentation.from_pretrained(d).eval()
    proc = CLIPSegProcessor.from_pretrained(d)
    image = Image.open(PHOTO).convert("RGB")

    def once():
        inputs = proc(text=["a cat", ""], images=[image] * 2, padding="max_length", return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits
        p = torch.softmax(logits, dim=0)[0]
        p = (p + 0.01).clamp_(0, 1)
        p = 255 * p / p.max()
        Image.fromarray(p.numpy()).convert("L").resize(image.size)

    once()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - start)
    print(f"SECONDS {best}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default=os.path.join(ROOT, "build", "bench-prep"))
    p.add_argument("--xltune", default=os.path.join(ROOT, "build", "bin", "xltune"))
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        transformers_side(a.child[0], int(a.child[1]))
        return
    d = os.path.join(a.workdir, "clipseg-full-random")
    if not os.path.exists(os.path.join(d, "model.safetensors")):
        make_full_clipseg(d)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    times = []
    for _ in range(4):  # the first is the warm-up
        out = subprocess.run([a.xltune, "mask", "--clipseg_model", d, "--prompt", "a cat", PHOTO, "--out",
                              os.path.join(a.workdir, "mask.png"), "--device", "cpu"], check=True, capture_output=True,
                             text=True, env=env).stdout
        times.append(float(re.search(r"; ([0-9.e-]+) s computing", out).group(1)))
    ours = min(times[1:])
    child = subprocess.run([sys.executable, __file__, "--child", d, str(a.threads)], check=True, capture_output=True,
                           text=True)
    theirs = float(re.search(r"SECONDS ([0-9.]+)", child.stdout).group(1))
    print(f"CLIPSeg (clipseg-rd64-refined's shape, random weights), 352 px, [prompt, empty], one 451x300 photo, "
          f"CPU fp32, {a.threads} threads, best of 3:")
    print(f"  transformers {theirs:6.3f} s/image   xltune {ours:6.3f} s/image   ratio {theirs / ours:.2f}x")


if __name__ == "__main__":
    main()
