#!/usr/bin/env python3
"""Training steps: xltune's Trainer against a diffusers + peft + transformers loop, same CPU, same run.

  .venv/bin/python bench/train.py [--presets tiny small] [--steps N] [--workdir DIR]

For each preset (made by `xltune init-model`, cached in WORKDIR), both sides run LoRA rank 32
(to_q, to_k, to_v, to_out.0, fp32) with pivotal tuning on the same synthetic batch: STEPS
steps while the new token rows train (both text encoders run with gradients to their token
tables), then STEPS steps after the pivot (xltune caches the text conditioning per caption; the
diffusers loop encodes the prompt every step without gradients, as diffusers' advanced SDXL
script does once its textual-inversion fraction ends). AdamW, gradient clipping to 1.0 and a
constant LR on both sides. Each side runs in its own process (one after the other), 2 threads;
the figure is the median step time after one untimed step, and the process's peak RSS.

Prints, per preset and phase, both step times, the ratio diffusers/xltune (> 1: xltune is faster),
both peak memories, and each side's median ms per phase of the step (text, draws, forward,
backward, clip, optimizer: where a ratio can come from). Goal (issue 8): >= 1.5x on the small
preset over a whole run.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = {"tiny": dict(resolution=128, batch=4), "small": dict(resolution=256, batch=2)}


def diffusers_loop(model, resolution, batch, steps):
    import torch
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from transformers import CLIPTextModel, CLIPTextModelWithProjection
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    torch.set_num_threads(2)
    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet")
    te1 = CLIPTextModel.from_pretrained(model, subfolder="text_encoder")
    te2 = CLIPTextModelWithProjection.from_pretrained(model, subfolder="text_encoder_2")
    after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    from diffusers import DDPMScheduler
    sched = DDPMScheduler.from_pretrained(model, subfolder="scheduler")
    tables = []
    for te in (te1, te2):
        te.requires_grad_(False)
        te.resize_token_embeddings(49410)
        getattr(te, "text_model", te).eos_token_id = 49407
        table = te.get_input_embeddings().weight
        table.requires_grad_(True)
        tables.append(table)
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=32, lora_alpha=32, init_lora_weights="gaussian",
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    lora = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": lora, "lr": 1e-4, "weight_decay": 1e-4},
                             {"params": tables, "lr": 3e-4, "weight_decay": 1e-3}])
    torch.manual_seed(1)
    latent = resolution // 8
    mean = torch.randn(batch, 4, latent, latent)
    logvar = torch.full((batch, 4, latent, latent), -4.0)
    ids = [49406, 320, 1125, 539, 49408, 49409, 525, 320, 2368, 49407]
    ids1 = torch.tensor(ids + [49407] * (77 - len(ids))).repeat(batch, 1)
    ids2 = torch.tensor(ids + [0] * (77 - len(ids))).repeat(batch, 1)
    time_ids = torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * batch)
    mask = torch.ones(batch, 1, latent, latent)
    old = [t.detach()[:49408].clone() for t in tables]

    def step(trains_rows, phases):
        # Phase marks as xltune's StepPhaseListener places them (train/trainer.h): the draws come
        # after the text here, so "draws" holds both.
        mark = [time.perf_counter()]

        def end(name):
            now = time.perf_counter()
            phases.setdefault(name, []).append((now - mark[0]) * 1e3)
            mark[0] = now

        with torch.set_grad_enabled(trains_rows):
            a = te1(ids1, output_hidden_states=True)
            b = te2(ids2, output_hidden_states=True)
            context = torch.cat([a.hidden_states[-2], b.hidden_states[-2]], -1)
            pooled = b.text_embeds
        end("text")
        x0 = (mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)) * 0.13025
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (batch,))
        end("draws")
        pred = unet(sched.add_noise(x0, noise, t), t, context,
                    added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
        loss = ((pred - noise) ** 2 * mask).mean()
        end("forward")
        loss.backward()
        end("backward")
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        end("clip")
        opt.step()
        opt.zero_grad(set_to_none=True)
        if trains_rows:
            with torch.no_grad():
                for t_, o in zip(tables, old):
                    t_[:49408] = o
        end("optimizer")

    out = []
    for phase, trains in (("before_pivot", True), ("after_pivot", False)):
        if not trains:
            for t_ in tables:
                t_.requires_grad_(False)
        step(trains, {})
        ms, phases = [], {}
        for _ in range(steps):
            t0 = time.perf_counter()
            step(trains, phases)
            ms.append((time.perf_counter() - t0) * 1e3)
        out.append({"impl": "diffusers", "phase": phase, "ms": statistics.median(ms),
                    "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "after_load_bytes": after_load,
                    "phases": {k: {"host_ms": statistics.median(v)} for k, v in phases.items()}})
    for line in out:
        print(json.dumps(line))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", nargs="+", default=["tiny", "small"])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--workdir", default=os.path.join(ROOT, "build", "bench-train"))
    p.add_argument("--xltune", default=os.path.join(ROOT, "build", "bin", "xltune"))
    p.add_argument("--bin", default=os.path.join(ROOT, "build", "bin", "xltune_bench_train"))
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        diffusers_loop(a.child[0], int(a.child[1]), int(a.child[2]), int(a.child[3]))
        return
    os.makedirs(a.workdir, exist_ok=True)
    for preset in a.presets:
        model = os.path.join(a.workdir, preset)
        if not os.path.exists(os.path.join(model, "model_index.json")):
            subprocess.run([a.xltune, "init-model", "--preset", preset, "--out", model], check=True, stdout=subprocess.DEVNULL)
        s = SETTINGS[preset]
        ours = [json.loads(l) for l in subprocess.run(
            [a.bin, model, "cpu", "lora", str(s["resolution"]), str(s["batch"]), str(a.steps)], check=True,
            capture_output=True, text=True).stdout.splitlines() if l.startswith("{")]
        theirs = [json.loads(l) for l in subprocess.run(
            [sys.executable, __file__, "--child", model, str(s["resolution"]), str(s["batch"]), str(a.steps)],
            check=True, capture_output=True, text=True).stdout.splitlines() if l.startswith("{")]
        print(f"{preset} preset: LoRA rank 32 + pivotal tuning, {s['resolution']}x{s['resolution']} images, batch "
              f"{s['batch']}, CPU fp32, 2 threads, median of {a.steps} steps")
        total_x = total_d = 0.0
        for x, d in zip(ours, theirs):
            total_x += x["ms"]
            total_d += d["ms"]
            print(f"  {x['phase']:13s} diffusers+peft {d['ms']:8.1f} ms/step   xltune {x['ms']:8.1f} ms/step   "
                  f"ratio {d['ms'] / x['ms']:.2f}x   peak RSS diffusers {d['peak_bytes'] / 2**20:6.0f} MiB, "
                  f"xltune {x['peak_bytes'] / 2**20:6.0f} MiB")
        print(f"  whole run (half before, half after the pivot): ratio {total_d / total_x:.2f}x")
        # Where each side's step goes (median ms per phase; they need not add up to the step's median).
        for x, d in zip(ours, theirs):
            names = ["text", "draws", "forward", "backward", "clip", "optimizer"]
            cell = lambda r, n: r.get("phases", {}).get(n, {}).get("host_ms", 0.0)  # noqa: E731
            print(f"  {x['phase']:13s} ms per phase, diffusers / xltune: " +
                  ", ".join(f"{n} {cell(d, n):.1f} / {cell(x, n):.1f}" for n in names))


if __name__ == "__main__":
    main()
