#!/usr/bin/env python3
"""Reference values for the training building blocks, from diffusers and torch.

  make_train_references.py OUTDIR      (run: .venv/bin/python tests/reference/make_train_references.py /tmp/x)

Writes:
  OUTDIR/schedules.safetensors   for each case of CASES (diffusers DDPMScheduler from that config):
      <case>.alphas_cumprod [T]; and for a sample x0 [3,2,2,2], noise, timesteps [3]:
      <case>.noisy (add_noise), <case>.velocity (get_velocity); plus x0, noise, timesteps.
  OUTDIR/schedules.json          the cases' configs, as scheduler_config.json would hold them
  OUTDIR/lr.json                 {"<name>/<warmup>/<total>": [lr factor used by step 1, 2, ..., total + 2]}
                                 from diffusers.optimization.get_scheduler on a base lr of 1: the
                                 factor in force at each optimizer step (scheduler stepped after it)
  OUTDIR/adamw.safetensors       torch.optim.AdamW with two groups (lr 1e-2 wd 1e-2; lr 3e-3 wd 0),
                                 6 steps: p<i>.initial, grad.<step>.<i>, p<i>.after.<step>; parameter 1
                                 (group 2) has no gradient in steps 4 and 5 (skipped, as the pivot does),
                                 the learning-rate factor of step s is FACTORS[s-1].
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from diffusers import DDPMScheduler
from diffusers.optimization import get_scheduler

CASES = {
    "sdxl": dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"),
    "linear": dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear"),
    "cosine": dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"),
    "sigmoid": dict(num_train_timesteps=500, beta_start=0.0001, beta_end=0.02, beta_schedule="sigmoid"),
    "zero_snr_v": dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                       rescale_betas_zero_snr=True, prediction_type="v_prediction"),
}
LR_CASES = [(n, w, t) for n in ("constant", "constant_with_warmup", "linear", "cosine") for w, t in ((0, 10), (3, 10), (5, 7))]
FACTORS = [1.0, 0.5, 0.25, 1.0, 0.75, 0.1]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(7)
    x0, noise = torch.randn(3, 2, 2, 2, generator=g), torch.randn(3, 2, 2, 2, generator=g)
    timesteps = torch.tensor([0, 250, 499])
    tensors = {"x0": x0, "noise": noise, "timesteps": timesteps}
    for name, cfg in CASES.items():
        s = DDPMScheduler(**cfg)
        tensors[f"{name}.alphas_cumprod"] = s.alphas_cumprod.clone()
        tensors[f"{name}.noisy"] = s.add_noise(x0, noise, timesteps)
        tensors[f"{name}.velocity"] = s.get_velocity(x0, noise, timesteps)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "schedules.safetensors"))
    json.dump(CASES, open(os.path.join(out, "schedules.json"), "w"), indent=1)

    lrs = {}
    for name, warmup, total in LR_CASES:
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=1.0)
        sched = get_scheduler(name, optimizer=opt, num_warmup_steps=warmup, num_training_steps=total)
        used = []
        for _ in range(total + 2):
            used.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        lrs[f"{name}/{warmup}/{total}"] = used
    json.dump(lrs, open(os.path.join(out, "lr.json"), "w"), indent=1)

    g = torch.Generator().manual_seed(11)
    p0 = torch.nn.Parameter(torch.randn(4, 3, generator=g))
    p1 = torch.nn.Parameter(torch.randn(5, generator=g))
    t = {"p0.initial": p0.detach().clone(), "p1.initial": p1.detach().clone()}
    opt = torch.optim.AdamW([{"params": [p0], "lr": 1e-2, "weight_decay": 1e-2},
                             {"params": [p1], "lr": 3e-3, "weight_decay": 0.0}], betas=(0.9, 0.999), eps=1e-8)
    base = [1e-2, 3e-3]
    for step in range(1, 7):
        for i, grp in enumerate(opt.param_groups):
            grp["lr"] = base[i] * FACTORS[step - 1]
        g0 = torch.randn(4, 3, generator=g)
        g1 = torch.randn(5, generator=g) * 1e-3
        p0.grad = g0.clone()
        t[f"grad.{step}.0"] = g0
        if step in (4, 5):
            p1.grad = None
        else:
            p1.grad = g1.clone()
            t[f"grad.{step}.1"] = g1
        opt.step()
        t[f"p0.after.{step}"] = p0.detach().clone()
        t[f"p1.after.{step}"] = p1.detach().clone()
    save_file(t, os.path.join(out, "adamw.safetensors"))
    print(f"wrote {out}: {len(CASES)} noise schedules, {len(LR_CASES)} lr schedules, 6 AdamW steps")


if __name__ == "__main__":
    main()
