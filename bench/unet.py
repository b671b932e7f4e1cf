#!/usr/bin/env python3
"""UNet and VAE benchmark on the CPU: xltune's libtorch models against diffusers on the same
config and weights, in the same invocation. Prints each time and the ratio (diffusers / xltune:
above 1 means xltune is faster).

  bench/unet.py [--batch 2] [--size 32] [--repeats 3]

UNet: SDXL's layout at mid size (block_out [64,128,256], heads [1,2,4], depths [1,2,2], the
config tests/reference/sdxl_full_size_keys.py writes as mid/unet), random weights, forward +
backward of mean(out²) on [batch, 4, size, size] latents with 77 context tokens, fp32, 2 threads.
VAE: the tiny 4-level vae_b layout scaled to SDXL's channel ratios ([32,64,128,128]), encode
of [batch, 3, 8*size, 8*size] images, no gradients.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_util import best_of  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))




def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bin", default=os.path.join(ROOT, "build", "bin", "xltune_bench_unet"))
    p.add_argument("--workdir", default=os.path.join(ROOT, "build", "bench", "unet"))
    args = p.parse_args()
    torch.set_num_threads(2)
    from diffusers import AutoencoderKL, UNet2DConditionModel
    os.makedirs(args.workdir, exist_ok=True)
    mid_config = os.path.join(args.workdir, "mid", "unet", "config.json")
    if not os.path.exists(mid_config):
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "reference", "sdxl_full_size_keys.py"), args.workdir],
                       check=True, stdout=subprocess.DEVNULL)
    unet_dir = os.path.join(args.workdir, "unet_mid")
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(os.path.dirname(mid_config)))
    unet.save_pretrained(unet_dir, safe_serialization=True)
    b, s = args.batch, args.size
    torch.manual_seed(0)
    sample = torch.randn(b, 4, s, s)
    context = torch.randn(b, 77, unet.config.cross_attention_dim)
    text_embeds = torch.randn(b, unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim)
    time_ids = torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * b)
    t = torch.full((b,), 500.0)

    def unet_step():
        unet.zero_grad(set_to_none=True)
        out = unet(sample, t, context, added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample
        out.square().mean().backward()
    # xltune first: after torch work in this process its idle OpenMP threads spin for a while
    # and would take the 2 cores from the child.
    ours = json.loads(subprocess.run([args.bin, "time", unet_dir, str(b), str(s), str(args.repeats)], check=True,
                                     capture_output=True, text=True).stdout)["seconds"]
    theirs = best_of(args.repeats, unet_step)
    params = sum(p.numel() for p in unet.parameters())
    print(f"UNet mid-size ({params / 1e6:.1f} M params), forward+backward, batch {b}, latent {s}x{s}, fp32, 2 threads, "
          f"best of {args.repeats}")
    print(f"  diffusers {theirs * 1e3:8.1f} ms   xltune {ours * 1e3:8.1f} ms   ratio diffusers/xltune {theirs / ours:.2f}x")

    vae_dir = os.path.join(args.workdir, "vae")
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=[32, 64, 128, 128], layers_per_block=2, norm_num_groups=32, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
    vae.save_pretrained(vae_dir, safe_serialization=True)
    image = torch.rand(b, 3, 8 * s, 8 * s) * 2 - 1
    ours = json.loads(subprocess.run([args.bin, "vae", vae_dir, str(b), str(8 * s), str(args.repeats)], check=True,
                                     capture_output=True, text=True).stdout)["seconds"]
    with torch.no_grad():
        theirs = best_of(args.repeats, lambda: vae.encode(image).latent_dist.mean.sum().item())
    print(f"VAE encode ([32,64,128,128]), batch {b}, image {8 * s}x{8 * s}, fp32, 2 threads, best of {args.repeats}")
    print(f"  diffusers {theirs * 1e3:8.1f} ms   xltune {ours * 1e3:8.1f} ms   ratio diffusers/xltune {theirs / ours:.2f}x")


if __name__ == "__main__":
    main()
