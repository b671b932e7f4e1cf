#!/usr/bin/env python3
"""diffusers' SDXL UNet, the baseline of bench/gpu/run's UNet probes (xltune_bench_unet gpu): random
weights from a UNet config, forward + backward of mean(out²), the same shapes as xltune's probe.

  diffusers_unet.py CONFIG [--device cuda|cpu] [--dtype bf16|fp32] [--repeats N] [--case B:LATENT:MODE ...]

CONFIG: a UNet config.json (bench/gpu/sdxl_unet_config.json: SDXL base's, full size) or a folder
with one. MODE: plain or recompute (gradient checkpointing). Without --case: the four GPU cases
1:128:plain, 4:128:recompute, 1:64:plain, 4:64:plain. Defaults: cuda, bf16, 5 timed repeats after
one untimed. Prints one JSON line per case: impl, batch, latent, checkpointing, ms (median), peak
GiB (GPU allocator peak; on the CPU the process's peak RSS), or "oom": true.
"""
import argparse
import json
import resource
import time

import torch
from diffusers import UNet2DConditionModel

GPU_CASES = ["1:128:plain", "4:128:recompute", "1:64:plain", "4:64:plain"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--case", action="append", help="BATCH:LATENT:plain|recompute (repeatable)")
    a = ap.parse_args()
    device, cuda = a.device, a.device == "cuda"
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    config = UNet2DConditionModel.load_config(a.config)
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(config).to(dtype)
    context_dim = config["cross_attention_dim"]
    context_dim = context_dim[0] if isinstance(context_dim, (list, tuple)) else context_dim
    text_dim = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
    for spec in a.case or GPU_CASES:
        batch, latent, mode = spec.split(":")
        batch, latent = int(batch), int(latent)
        if mode == "recompute":
            unet.enable_gradient_checkpointing()
        else:
            unet.disable_gradient_checkpointing()
        g = torch.Generator(device).manual_seed(0)
        sample = torch.randn(batch, config["in_channels"], latent, latent, device=device, dtype=dtype, generator=g)
        context = torch.randn(batch, 77, context_dim, device=device, dtype=dtype, generator=g)
        text_embeds = torch.randn(batch, text_dim, device=device, dtype=dtype, generator=g)
        time_ids = torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * batch, device=device, dtype=dtype)
        t = torch.full((batch,), 500.0, device=device)
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times = []
        row = {"impl": "diffusers", "batch": batch, "latent": latent, "checkpointing": mode}
        try:
            for step in range(a.repeats + 1):
                unet.zero_grad(set_to_none=True)
                sync()
                start = time.perf_counter()
                out = unet(sample, t, context, added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample
                out.float().square().mean().backward()
                sync()
                if step:
                    times.append(time.perf_counter() - start)
            row["ms"] = sorted(times)[len(times) // 2] * 1e3
            row["peak_gib"] = (torch.cuda.max_memory_allocated() if cuda
                               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30
        except torch.OutOfMemoryError:
            row["oom"] = True
        print(json.dumps(row), flush=True)
        del sample, context, text_embeds
        unet.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
