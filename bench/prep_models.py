"""The preprocessing models of xltune against transformers on the CPU: seconds per image.

  .venv/bin/python bench/prep_models.py [--threads 2] [--workdir DIR] [--only clipseg,blip,swin2sr]

Each model at full size with the hub config's values and random weights (no download), on one
sample photo, as preprocessing runs it:
  CLIPSeg  CIDAS/clipseg-rd64-refined: the reference's mask ([prompt, ""] at 352 px, softmax,
           resize back).
  BLIP     Salesforce/blip-image-captioning-large: a 40-token greedy caption (random weights
           never end a caption early, and greedy makes both sides decode the same tokens: the
           parity tests show they are identical). The reference samples 150 tokens at most.
  Swin2SR  caidas/swin2SR-realworld-sr-x4-64-bsrgan-psnr: x4 of a 64 px crop (preprocessing
           upscales only crops smaller than the resolution).
Each side in its own process with the same threads; timed: the model's work alone (loading
excluded), best of 3 after a warm-up in the same process. Prints both and the ratio transformers/xltune (> 1: xltune
is faster).
"""
import argparse
import json
import os
import re
import subprocess
import sys

from bench_util import best_of  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTO = os.path.join(ROOT, "data", "samples", "chelsea.png")
BLIP_TOKENS = 40
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))


def make_full_clipseg(d):
    import shutil
    import torch
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, ViTImageProcessor
    from make_clipseg_models import FULL, IMAGENET
    torch.manual_seed(0)
    model = CLIPSegForImageSegmentation(CLIPSegConfig(text_config=FULL["text"], vision_config=FULL["vision"],
                                                      **FULL["top"])).eval()
    model.save_pretrained(d, safe_serialization=True)
    ViTImageProcessor(size={"height": 352, "width": 352}, resample=2, **IMAGENET).save_pretrained(d)
    tok = os.path.join(ROOT, "build", "testdata", "clip", "tokenizers", "tokenizer")
    if not os.path.isdir(tok):  # tests/run makes it; after launch/setup alone, made here from data/vocab
        made = os.path.join(d, ".clip-tokenizers")
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "reference", "make_clip_tokenizers.py"), made],
                       check=True, stdout=subprocess.DEVNULL)
        tok = os.path.join(made, "tokenizer")
    for f in ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok, f), d)


def make_full_blip(d):
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor
    from make_blip_models import FULL, OPENAI_CLIP
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(BlipConfig(text_config=FULL["text"], vision_config=FULL["vision"])).eval()
    model.save_pretrained(d, safe_serialization=True)
    BlipImageProcessor(size={"height": 384, "width": 384}, resample=3, **OPENAI_CLIP).save_pretrained(d)
    # A vocabulary of the full size (the words do not matter to the timing).
    words = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words += [f"w{i}" for i in range(30522 - len(words))]
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("\n".join(words) + "\n")
    tok = BertTokenizer(os.path.join(d, "vocab.txt"))
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.save_pretrained(d)


def make_full_swin2sr(d):
    import torch
    from transformers import Swin2SRConfig, Swin2SRForImageSuperResolution, Swin2SRImageProcessor
    from make_swin2sr_models import FULL
    torch.manual_seed(0)
    Swin2SRForImageSuperResolution(Swin2SRConfig(**FULL)).eval().save_pretrained(d, safe_serialization=True)
    Swin2SRImageProcessor().save_pretrained(d)


def small_crop():
    from PIL import Image
    path = os.path.join(ROOT, "build", "bench-prep", "crop64.png")
    if not os.path.exists(path):
        Image.open(PHOTO).convert("RGB").crop((150, 60, 214, 124)).save(path)
    return path


def transformers_clipseg(d):
    import torch
    from PIL import Image
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor
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
    return once


def transformers_blip(d):
    import torch
    from PIL import Image
    from transformers import AutoTokenizer, BlipForConditionalGeneration, BlipImageProcessor
    model = BlipForConditionalGeneration.from_pretrained(d).eval()
    proc, tok = BlipImageProcessor.from_pretrained(d), AutoTokenizer.from_pretrained(d)
    image = Image.open(PHOTO).convert("RGB")

    def once():
        x = proc(images=image, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            ids = model.generate(pixel_values=x, max_length=BLIP_TOKENS, do_sample=False)
        tok.decode(ids[0], skip_special_tokens=True)
    return once


def transformers_swin2sr(d):
    import numpy as np
    import torch
    from PIL import Image
    from transformers import Swin2SRForImageSuperResolution, Swin2SRImageProcessor
    model = Swin2SRForImageSuperResolution.from_pretrained(d).eval()
    proc = Swin2SRImageProcessor.from_pretrained(d)
    image = Image.open(small_crop()).convert("RGB")

    def once():  # cog-sdxl's swin_ir_sr
        x = proc(image, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            y = model(pixel_values=x).reconstruction.squeeze(0).float().clamp_(0, 1).numpy()
        Image.fromarray((np.moveaxis(y, 0, -1) * 255.0).round().astype(np.uint8))
    return once


def transformers_side(kind, d, threads):
    import torch
    torch.set_num_threads(threads)
    once = {"clipseg": transformers_clipseg, "blip": transformers_blip, "swin2sr": transformers_swin2sr}[kind](d)
    print(f"SECONDS {best_of(3, once)}")


def xltune_seconds(a, kind, d, env):
    """The best of 3 runs after a warm-up, in one process (as the transformers side is timed)."""
    if kind == "clipseg":
        out = subprocess.run([a.xltune, "mask", "--clipseg_model", d, "--prompt", "a cat", PHOTO, "--out",
                              os.path.join(a.workdir, "mask.png"), "--device", "cpu", "--repeat", "4"], check=True,
                             capture_output=True, text=True, env=env).stdout
        return float(re.search(r"; ([0-9.e-]+) s computing", out).group(1))
    if kind == "swin2sr":
        out = subprocess.run([a.xltune, "upscale", "--upscaler_model", d, small_crop(), "--out",
                              os.path.join(a.workdir, "x4.png"), "--device", "cpu", "--repeat", "4"], check=True,
                             capture_output=True, text=True, env=env).stdout
        return float(re.search(r"; ([0-9.e-]+) s computing", out).group(1))
    out = subprocess.run([a.xltune, "caption", "--blip_model", d, "--decoding", "greedy", "--max_length",
                          str(BLIP_TOKENS), "--json", "--device", "cpu"] + [PHOTO] * 4, check=True,
                         capture_output=True, text=True, env=env).stdout
    return min(json.loads(line)["seconds"] for line in out.splitlines()[1:])


LABELS = {
    "clipseg": "CLIPSeg (clipseg-rd64-refined's shape), 352 px, [prompt, empty], one 451x300 photo",
    "blip": f"BLIP (blip-image-captioning-large's shape), 384 px, a {BLIP_TOKENS}-token greedy caption",
    "swin2sr": "Swin2SR x4 (swin2SR-realworld-sr-x4-64-bsrgan-psnr's shape), a 64 px crop to 256 px (one tile)",
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default=os.path.join(ROOT, "build", "bench-prep"))
    p.add_argument("--xltune", default=os.path.join(ROOT, "build", "bin", "xltune"))
    p.add_argument("--only", default="clipseg,blip,swin2sr")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        transformers_side(a.child[0], a.child[1], int(a.child[2]))
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    for kind in a.only.split(","):
        d = os.path.join(a.workdir, f"{kind}-full-random")
        if not os.path.exists(os.path.join(d, "model.safetensors")):
            os.makedirs(d, exist_ok=True)
            {"clipseg": make_full_clipseg, "blip": make_full_blip, "swin2sr": make_full_swin2sr}[kind](d)
        ours = xltune_seconds(a, kind, d, env)
        child = subprocess.run([sys.executable, __file__, "--child", kind, d, str(a.threads)], check=True,
                               capture_output=True, text=True)
        theirs = float(re.search(r"SECONDS ([0-9.]+)", child.stdout).group(1))
        print(f"{LABELS[kind]}, CPU fp32, {a.threads} threads, best of 3:")
        print(f"  transformers {theirs:6.3f} s/image   xltune {ours:6.3f} s/image   ratio {theirs / ours:.2f}x",
              flush=True)


if __name__ == "__main__":
    main()
