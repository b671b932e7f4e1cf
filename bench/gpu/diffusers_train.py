#!/usr/bin/env python3
"""The baseline of bench/gpu/run's training cases (and of xltune_bench_train anywhere): SDXL
fine-tuning steps with diffusers + peft + transformers, shaped as xltune's Trainer steps.

  diffusers_train.py MODEL_DIR|sdxl-base DEVICE lora|full RESOLUTION BATCH STEPS [checkpointing]

sdxl-base: SDXL base 1.0's UNet (bench/gpu/sdxl_unet_config.json) and both text encoders built from
their configs with random weights on the device (no download). On CUDA: frozen weights bf16, LoRA
fp32 (rank 32 on to_q/to_k/to_v/to_out.0), full fine-tuning in fp32 under bf16 autocast; TF32 on.
Pivotal tuning as diffusers' advanced SDXL script does it: both token tables trainable (resized by
two rows) while the rows train, then the prompt is still encoded every step without gradients.
AdamW, gradients clipped to 1.0. Prints one JSON line per phase (before_pivot, after_pivot): the
median step in ms after one untimed step, and peak memory (GPU allocator peak or peak RSS).
"""
import json
import os
import resource
import statistics
import sys
import time

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
HERE = os.path.dirname(os.path.abspath(__file__))


def build(model, device, unet_dtype, te_dtype):
    if model != "sdxl-base":
        unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet").to(device, unet_dtype)
        te1 = CLIPTextModel.from_pretrained(model, subfolder="text_encoder").to(device, te_dtype)
        te2 = CLIPTextModelWithProjection.from_pretrained(model, subfolder="text_encoder_2").to(device, te_dtype)
        return unet, te1, te2
    common = dict(vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(
            os.path.join(HERE, "sdxl_unet_config.json"))).to(unet_dtype)
        te1 = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                           num_attention_heads=12, hidden_act="quick_gelu", **common)).to(te_dtype)
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                                                         num_attention_heads=20, hidden_act="gelu", projection_dim=1280,
                                                         **common)).to(te_dtype)
    return unet, te1, te2


def main():
    model, device, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    resolution, batch, steps = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    checkpointing = len(sys.argv) > 7 and sys.argv[7] == "checkpointing"
    cuda = device == "cuda"
    lora = mode == "lora"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    frozen = torch.bfloat16 if cuda else torch.float32
    torch.manual_seed(0)
    unet, te1, te2 = build(model, device, frozen if lora else torch.float32, frozen)
    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    tables = []
    for te in (te1, te2):
        te.requires_grad_(False)
        te.resize_token_embeddings(49410)
        getattr(te, "text_model", te).eos_token_id = 49407
        table = te.get_input_embeddings().weight
        table.data = table.data.float()  # trained in fp32 (the encoders' other weights stay frozen bf16)
        table.requires_grad_(True)
        tables.append(table)
        # The rows' output in the encoder's dtype, as xltune's encoders take it: an fp32 embedding
        # into bf16 layers stops at the first layer_norm ("expected scalar type Float but found
        # BFloat16"), which the CPU rehearsal (fp32 throughout) never meets.
        te.get_input_embeddings().register_forward_hook(lambda _m, _i, out: out.to(frozen))
    unet.requires_grad_(False)
    if lora:
        from peft import LoraConfig
        unet.add_adapter(LoraConfig(r=32, lora_alpha=32, init_lora_weights="gaussian",
                                    target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
        for p in unet.parameters():
            if p.requires_grad:
                p.data = p.data.float()
        main = [p for p in unet.parameters() if p.requires_grad]
    else:
        main = list(unet.parameters())
        for p in main:
            p.requires_grad_(True)
    if checkpointing:
        unet.enable_gradient_checkpointing()
    opt = torch.optim.AdamW([{"params": main, "lr": 1e-4, "weight_decay": 1e-4},
                             {"params": tables, "lr": 3e-4, "weight_decay": 1e-3}])
    latent = resolution // 8
    g = torch.Generator(device).manual_seed(1)
    mean = torch.randn(batch, 4, latent, latent, device=device, generator=g)
    ids = [49406, 320, 1125, 539, 49408, 49409, 525, 320, 2368, 49407]
    ids1 = torch.tensor(ids + [49407] * (77 - len(ids)), device=device).repeat(batch, 1)
    ids2 = torch.tensor(ids + [0] * (77 - len(ids)), device=device).repeat(batch, 1)
    time_ids = torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * batch, device=device)

    def step(trains_rows):
        with torch.set_grad_enabled(trains_rows):
            a = te1(ids1, output_hidden_states=True)
            b = te2(ids2, output_hidden_states=True)
            context = torch.cat([a.hidden_states[-2], b.hidden_states[-2]], -1)
            pooled = b.text_embeds
        x0 = mean * 0.13025
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (batch,), device=device)
        noisy = sched.add_noise(x0, noise, t)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and not lora):
            pred = unet(noisy.to(unet.dtype), t, context.to(unet.dtype),
                        added_cond_kwargs={"text_embeds": pooled.to(unet.dtype), "time_ids": time_ids.to(unet.dtype)}).sample
        loss = ((pred.float() - noise) ** 2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for grp in opt.param_groups for p in grp["params"] if p.grad is not None], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for phase, trains in (("before_pivot", True), ("after_pivot", False)):
        if not trains:
            for t_ in tables:
                t_.requires_grad_(False)
        step(trains)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        ms = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step(trains)
            if cuda:
                torch.cuda.synchronize()
            ms.append((time.perf_counter() - t0) * 1e3)
        peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"impl": "diffusers", "model": model, "mode": mode, "phase": phase, "resolution": resolution,
                          "batch": batch, "checkpointing": checkpointing, "ms": statistics.median(ms),
                          "peak_bytes": peak}), flush=True)


if __name__ == "__main__":
    main()
