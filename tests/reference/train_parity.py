#!/usr/bin/env python3
"""Replays an xltune training run with diffusers + peft + transformers and compares.

  train_parity.py MODEL_DIR RUN_DIR DUMP_DIR [--loss-tol X] [--weight-tol X]

RUN_DIR is the run's --output_dir (run_config.json, trainer_state.safetensors); DUMP_DIR its
--dump_steps folder (initial/, step-NNNNNN.safetensors). Written from the training contract
(docs/training-step.md), not from xltune's code:

  * models: UNet2DConditionModel, CLIPTextModel, CLIPTextModelWithProjection and DDPMScheduler
    from MODEL_DIR (fp32); both tokenizers get "<s0>", "<s1>" and the encoders resize_token_
    embeddings; the new rows are set from DUMP_DIR/initial/embeddings.pti. Pooling at the first
    end-of-text token (eos_token_id 49407).
  * LoRA: peft, target_modules to_q/to_k/to_v/to_out.0, r and lora_alpha from run_config.json,
    A and B from DUMP_DIR/initial/lora_kohya.safetensors (kohya keys: lora_unet_<module path with
    dots as underscores>). Full fine-tuning: every UNet parameter except the fnmatch patterns
    *.norm*.weight and *time* (the reference trainer's rule).
  * optimizer: torch.optim.AdamW, groups as run_config.json lists them (LoRA or UNet first, the
    whole token tables of both encoders second); the old rows are restored after each step and
    the new rows scaled by (std_old / std_new) ** 0.1 while they train (steps 1..pivot), then
    the tables stop requiring gradients; diffusers' get_scheduler; clip_grad_norm_ to
    max_grad_norm over every trainable tensor; optimizer.step(), scheduler.step(), zero_grad().
  * each step: the dump's latents, noise, timesteps, ids, add_time_ids and mask; context =
    cat(TE1.hidden_states[-2], TE2.hidden_states[-2]), pooled = TE2.text_embeds;
    noisy = scheduler.add_noise; target = noise (epsilon) or get_velocity (v_prediction);
    loss = mean((pred - target)^2 * mask) (min-SNR weighted per sample when snr_gamma > 0).

Checks every step's loss against the dump's and the final trainable weights against xltune's
trainer_state.safetensors; prints the worst differences; exits 1 when a tolerance is exceeded.
"""
import argparse
import fnmatch
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from safetensors.torch import load_file

from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.optimization import get_scheduler
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
NEW_TOKENS = ["<s0>", "<s1>"]


def text_model(m):
    return getattr(m, "text_model", m)


def token_table(m):
    return text_model(m).embeddings.token_embedding.weight


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("run")
    ap.add_argument("dump")
    # Measured on ATen's native (AVX-512), avx2 and default CPU kernels (ATEN_CPU_CAPABILITY for
    # both sides): losses 1.5e-7 (LoRA, 10 steps; no growth along them), 1.1e-7 (full, 8 steps);
    # per-tensor weights 1.3e-5 (LoRA's smallest B), change ratio 4.2e-6.
    ap.add_argument("--loss-tol", type=float, default=5e-7, help="max |loss difference| / loss")
    ap.add_argument("--weight-tol", type=float, default=5e-5,
                    help="per tensor: max |xltune - reference| / max |reference|")
    ap.add_argument("--change-tol", type=float, default=2e-5,
                    help="all tensors: ||xltune - reference|| / ||reference - initial|| (training happened alike)")
    a = ap.parse_args()
    torch.manual_seed(0)
    cfg = json.load(open(os.path.join(a.run, "run_config.json")))
    opt, res = cfg["options"], cfg["resolved"]
    total, pivot = res["max_train_steps"], res["pivot_step"]
    is_lora = opt["is_lora"]

    unet = UNet2DConditionModel.from_pretrained(a.model, subfolder="unet").float()
    te1 = CLIPTextModel.from_pretrained(a.model, subfolder="text_encoder").float()
    te2 = CLIPTextModelWithProjection.from_pretrained(a.model, subfolder="text_encoder_2").float()
    noise_scheduler = DDPMScheduler.from_pretrained(a.model, subfolder="scheduler")
    initial_rows = load_file(os.path.join(a.dump, "initial", "embeddings.pti"))
    old_tables, std_old = [], []
    for i, (te, sub) in enumerate(((te1, "tokenizer"), (te2, "tokenizer_2"))):
        tok = CLIPTokenizer.from_pretrained(a.model, subfolder=sub)
        tok.add_special_tokens({"additional_special_tokens": NEW_TOKENS})
        old = token_table(te).detach().clone()
        old_tables.append(old)
        std_old.append(old.std())
        te.resize_token_embeddings(len(tok))
        with torch.no_grad():
            token_table(te)[old.shape[0]:] = initial_rows[f"text_encoders_{i}"]
        text_model(te).eos_token_id = 49407  # pool at the first end-of-text token
        te.requires_grad_(False)
        token_table(te).requires_grad_(True)

    unet.requires_grad_(False)
    if is_lora:
        from peft import LoraConfig
        unet.add_adapter(LoraConfig(r=opt["lora_rank"], lora_alpha=res["lora_alpha"], init_lora_weights="gaussian",
                                    target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
        kohya = load_file(os.path.join(a.dump, "initial", "lora_kohya.safetensors"))
        lora_params, lora_modules = [], {}
        with torch.no_grad():
            for name, module in unet.named_modules():
                if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
                    key = "lora_unet_" + name.replace(".", "_")
                    module.lora_A["default"].weight.copy_(kohya.pop(key + ".lora_down.weight"))
                    module.lora_B["default"].weight.copy_(kohya.pop(key + ".lora_up.weight"))
                    assert float(kohya.pop(key + ".alpha")) == res["lora_alpha"]
                    lora_modules[name] = module
                    lora_params += [module.lora_A["default"].weight, module.lora_B["default"].weight]
        assert not kohya, f"kohya keys without a module: {list(kohya)[:3]}"
        for p in lora_params:
            p.requires_grad_(True)
        main_group = {"params": lora_params, "lr": opt["lora_lr"], "weight_decay": 1e-4}
    else:
        unet_params = {n: p for n, p in unet.named_parameters()
                       if not fnmatch.fnmatch(n, "*.norm*.weight") and not fnmatch.fnmatch(n, "*time*")}
        for p in unet_params.values():
            p.requires_grad_(True)
        main_group = {"params": list(unet_params.values()), "lr": opt["unet_learning_rate"], "weight_decay": 1e-4}
    tables = [token_table(te1), token_table(te2)]
    optimizer = torch.optim.AdamW([main_group, {"params": tables, "lr": opt["ti_lr"], "weight_decay": 1e-3}],
                                  betas=(0.9, 0.999), eps=1e-8)
    schedule = get_scheduler(res["lr_scheduler"], optimizer=optimizer, num_warmup_steps=res["lr_warmup_steps"],
                             num_training_steps=total)
    gamma = opt["snr_gamma"]
    v_pred = noise_scheduler.config.prediction_type == "v_prediction"

    worst_loss = 0.0
    for step in range(1, total + 1):
        d = load_file(os.path.join(a.dump, f"step-{step:06d}.safetensors"))
        trains_rows = step <= pivot
        if not trains_rows:
            for t in tables:
                t.requires_grad_(False)
                t.grad = None
        with torch.set_grad_enabled(trains_rows):
            o1 = te1(d["input_ids_1"], output_hidden_states=True)
            o2 = te2(d["input_ids_2"], output_hidden_states=True)
            context = torch.cat([o1.hidden_states[-2], o2.hidden_states[-2]], dim=-1)
            pooled = o2.text_embeds
        x0, noise, t = d["latents"], d["noise"], d["timesteps"]
        noisy = noise_scheduler.add_noise(x0, noise, t)
        target = noise_scheduler.get_velocity(x0, noise, t) if v_pred else noise
        pred = unet(noisy, t, encoder_hidden_states=context,
                    added_cond_kwargs={"text_embeds": pooled, "time_ids": d["add_time_ids"]}).sample
        sq = (pred.float() - target.float()) ** 2 * d["mask"]
        if gamma > 0:
            alphas = noise_scheduler.alphas_cumprod[t]
            snr = alphas / (1 - alphas)
            w = torch.stack([snr, gamma * torch.ones_like(t, dtype=snr.dtype)], dim=1).min(dim=1)[0]
            w = w / (snr + 1) if v_pred else w / snr
            loss = (sq.mean(dim=[1, 2, 3]) * w).mean()
        else:
            loss = sq.mean()
        ours = float(d["loss"])
        rel = abs(loss.item() - ours) / max(abs(ours), 1e-12)
        worst_loss = max(worst_loss, rel)
        print(f"step {step:3d}: loss reference {loss.item():.8f}  xltune {ours:.8f}  rel diff {rel:.2e}"
              f"{'  (rows train)' if trains_rows else ''}")
        loss.backward()
        # Only the new rows are trainable: the old rows' gradients take no part (in the norm either).
        for i, table in enumerate(tables):
            if table.grad is not None:
                table.grad[: old_tables[i].shape[0]] = 0
        trainable = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
        torch.nn.utils.clip_grad_norm_(trainable, opt["max_grad_norm"])
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for i, table in enumerate(tables):
                n_old = old_tables[i].shape[0]
                table[:n_old] = old_tables[i]
                if trains_rows:
                    new = table[n_old:]
                    table[n_old:] = new * (std_old[i] / new.std()) ** 0.1

    # Final weights against xltune's trainer state.
    state = load_file(os.path.join(a.run, "trainer_state.safetensors"))
    initial_state = {}
    worst = {}

    sums = {"diff": 0.0, "change": 0.0}

    def compare(name, ref, start):
        mine = state.pop(name)
        diff = (mine - ref).abs().max().item()
        worst[name] = (diff / max(ref.abs().max().item(), 1e-30), diff, (ref - start).abs().max().item())
        sums["diff"] += (mine - ref).double().pow(2).sum().item()
        sums["change"] += (ref - start).double().pow(2).sum().item()

    with torch.no_grad():
        for i, table in enumerate(tables):
            n_old = old_tables[i].shape[0]
            assert torch.equal(table[:n_old], old_tables[i])
            compare(f"text_encoders_{i}", table[n_old:], initial_rows[f"text_encoders_{i}"])
        if is_lora:
            init = load_file(os.path.join(a.dump, "initial", "lora_kohya.safetensors"))
            for name, module in lora_modules.items():
                key = "lora_unet_" + name.replace(".", "_")
                compare(f"unet.{name}.lora_A.weight", module.lora_A["default"].weight, init[key + ".lora_down.weight"])
                compare(f"unet.{name}.lora_B.weight", module.lora_B["default"].weight, init[key + ".lora_up.weight"])
        else:
            base = UNet2DConditionModel.from_pretrained(a.model, subfolder="unet").float().state_dict()
            for name, p in unet_params.items():
                compare(f"unet.{name}", p, base[name])
    assert not state, f"xltune trained tensors the reference did not: {list(state)[:3]}"
    name, (rel, diff, change) = max(worst.items(), key=lambda kv: kv[1][0])
    moved = (sums["diff"] / max(sums["change"], 1e-300)) ** 0.5
    print(f"losses: worst relative difference {worst_loss:.2e} over {total} steps (tolerance {a.loss_tol:.0e})")
    print(f"weights: {len(worst)} tensors; worst {name}: max |diff| {diff:.3e} = {rel:.2e} of the tensor's largest "
          f"value (tolerance {a.weight_tol:.0e}); its largest change in training {change:.3e}")
    print(f"weights: ||xltune - reference|| / ||trained change|| = {moved:.2e} over all tensors "
          f"(tolerance {a.change_tol:.0e})")
    ok = worst_loss <= a.loss_tol and rel <= a.weight_tol and moved <= a.change_tol and sums["change"] > 0
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
