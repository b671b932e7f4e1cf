#!/usr/bin/env python3
"""diffusers' SDXL UNet on the GPU, the baseline of bench/gpu/run: random bf16 weights from
the full-size config, forward + backward of mean(out²), the same shapes as xltune's probe.
Prints one JSON line per case: impl, batch, latent, checkpointing, ms (median of 5), peak GiB."""
import json
import sys
import time

import torch
from diffusers import UNet2DConditionModel

config = UNet2DConditionModel.load_config(sys.argv[1])
torch.manual_seed(0)
with torch.device("cuda"):
    unet = UNet2DConditionModel.from_config(config).to(torch.bfloat16)
for batch, latent, mode in [(1, 128, "plain"), (4, 128, "recompute"), (1, 64, "plain"), (4, 64, "plain")]:
    if mode == "recompute":
        unet.enable_gradient_checkpointing()
    else:
        unet.disable_gradient_checkpointing()
    g = torch.Generator("cuda").manual_seed(0)
    sample = torch.randn(batch, 4, latent, latent, device="cuda", dtype=torch.bfloat16, generator=g)
    context = torch.randn(batch, 77, 2048, device="cuda", dtype=torch.bfloat16, generator=g)
    text_embeds = torch.randn(batch, 1280, device="cuda", dtype=torch.bfloat16, generator=g)
    time_ids = torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * batch, device="cuda", dtype=torch.bfloat16)
    t = torch.full((batch,), 500.0, device="cuda")
    torch.cuda.reset_peak_memory_stats()
    times = []
    try:
        for step in range(6):
            unet.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            start = time.perf_counter()
            out = unet(sample, t, context, added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample
            out.float().square().mean().backward()
            torch.cuda.synchronize()
            if step:
                times.append(time.perf_counter() - start)
        ms = sorted(times)[len(times) // 2] * 1e3
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(json.dumps({"impl": "diffusers", "batch": batch, "latent": latent, "checkpointing": mode, "ms": ms,
                          "peak_gib": peak}), flush=True)
    except torch.OutOfMemoryError:
        print(json.dumps({"impl": "diffusers", "batch": batch, "latent": latent, "checkpointing": mode, "oom": True}))
    del sample, context
    torch.cuda.empty_cache()
