#!/usr/bin/env python3
"""Tiny seeded CLIP text encoders + reference outputs/gradients for xltune's C++ text encoders.

  make_clip_text_encoders.py OUTDIR          (run: .venv/bin/python tests/reference/make_clip_text_encoders.py /tmp/xlref)

Writes (everything fp32):
  OUTDIR/<name>/config.json, model.safetensors   for te1_a, te1_b (CLIPTextModel, quick_gelu) and te2_a, te2_b
      (CLIPTextModelWithProjection, gelu); vocab 49408, 77 positions, bos/eos/pad 49406/49407/49407.
      Key naming: te2_* keys are "text_model.*" + "text_projection.weight" (as transformers writes them).
      te1_a is written hub-style ("text_model." prefix, as SDXL's text_encoder/model.safetensors);
      te1_b as transformers 5.24's save_pretrained writes a CLIPTextModel (no prefix). Both load back.
  OUTDIR/<name>/parity.safetensors   the model grown to 49410 token rows (new_rows at 49408..49409):
      input_ids [3,77] int64 (row 0 caption, row 1 with both new tokens, row 2 random full length; padding
      is 49407 for te1_*, 0 for te2_* as SDXL's tokenizer_2 pads), new_rows, hidden_states.<i> (0 = embeddings
      output), last_hidden_state, pooled (final-layer-normed state at the FIRST 49407 of each row),
      pooled_argmax (at argmax(input_ids): transformers' choice when config.eos_token_id == 2, as in SDXL's
      hub configs; differs on row 1), text_embeds (projection models), R_pen, R_pool, loss, grad_new_rows,
      grad_old_row_320, where loss = sum(hidden_states[-2] * R_pen) + sum(final_pooled * R_pool) and
      final_pooled = text_embeds (projection models) or pooled. No attention_mask (causal mask only).
  OUTDIR/single_file_text.safetensors   te1_a + te2_a laid out as SDXL's original (SGM) checkpoint:
      conditioner.embedders.0.transformer.text_model.* (+ embeddings.position_ids int64 [1,77]),
      conditioner.embedders.1.model.* in open_clip names (+ logit_scale), and dummy UNet/VAE keys.
  OUTDIR/full_size_keys.json, OUTDIR/full_size/text_encoder{,_2}/config.json   key/shape lists of SDXL base
      1.0's real text encoders, built on the meta device (no weights).
"""
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()

TINY = {  # name: (class, seed, config kwargs)
    "te1_a": (CLIPTextModel, 101, dict(hidden_size=32, intermediate_size=37, num_hidden_layers=3,
                                       num_attention_heads=4, hidden_act="quick_gelu")),
    "te1_b": (CLIPTextModel, 102, dict(hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=3, hidden_act="quick_gelu")),
    "te2_a": (CLIPTextModelWithProjection, 201, dict(hidden_size=40, intermediate_size=80, num_hidden_layers=3,
                                                     num_attention_heads=5, hidden_act="gelu", projection_dim=24)),
    "te2_b": (CLIPTextModelWithProjection, 202, dict(hidden_size=64, intermediate_size=96, num_hidden_layers=4,
                                                     num_attention_heads=2, hidden_act="gelu", projection_dim=64)),
}
COMMON = dict(vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5, attention_dropout=0.0,
              dropout=0.0, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
FULL = {  # SDXL base 1.0 text_encoder / text_encoder_2 config.json (token ids as the hub files have them)
    "text_encoder": (CLIPTextModel, dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                         num_attention_heads=12, hidden_act="quick_gelu", projection_dim=768)),
    "text_encoder_2": (CLIPTextModelWithProjection, dict(hidden_size=1280, intermediate_size=5120,
                                                         num_hidden_layers=32, num_attention_heads=20,
                                                         hidden_act="gelu", projection_dim=1280)),
}
FULL_COMMON = dict(vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5, attention_dropout=0.0,
                   dropout=0.0, bos_token_id=0, eos_token_id=2, pad_token_id=1)
CAPTION = [49406, 320, 1125, 539, 320, 2368, 4919, 525, 320, 736, 4269, 530, 518, 2756, 49407]  # a photo of a cat
NEWTOK = [49406, 320, 1125, 539, 49408, 49409, 530, 320, 2368, 49407]  # sitting on a red chair in the garden


def text_model(model):
    return getattr(model, "text_model", model)  # transformers 5: CLIPTextModel *is* the text transformer


def randomize(model):
    """Non-trivial weights everywhere (std 0.02..0.2), forward stays tame."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
            elif "token_embedding" in name:
                p.copy_(0.1 * torch.randn_like(p))
            elif "position_embedding" in name:
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.copy_(min(0.2, max(0.02, p.shape[1] ** -0.5)) * torch.randn_like(p))


def hub_state_dict(model):
    """Keys as SDXL's hub files name them: always with the "text_model." prefix."""
    sd = model.state_dict()
    return {(k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v.contiguous()
            for k, v in sd.items()}


def build_tiny(outdir, name):
    cls, seed, kw = TINY[name]
    torch.manual_seed(seed)
    model = cls(CLIPTextConfig(**COMMON, **kw))
    model.set_attn_implementation("eager")
    randomize(model)
    model.eval()
    d = os.path.join(outdir, name)
    model.save_pretrained(d, safe_serialization=True)
    if name == "te1_a":  # rewrite hub-style
        save_file(hub_state_dict(model), os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    back = cls.from_pretrained(d)
    same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
    keys = list(load_file(os.path.join(d, "model.safetensors")))
    print(f"{name}: {cls.__name__} seed {seed}, {sum(p.numel() for p in model.parameters())} params, "
          f"{len(keys)} tensors, e.g. {sorted(keys)[0]!r}; reload identical: {same}")
    assert same
    return model, seed


def parity(outdir, name, model, seed):
    cls, _, kw = TINY[name]
    hidden, proj = kw["hidden_size"], cls is CLIPTextModelWithProjection
    g = torch.Generator().manual_seed(seed + 1000)
    tm = text_model(model)
    old = tm.embeddings.token_embedding.weight.detach()
    new_rows = torch.randn(2, hidden, generator=g) * old.std()
    emb = torch.nn.Embedding(49410, hidden)
    with torch.no_grad():
        emb.weight.copy_(torch.cat([old, new_rows], 0))
    tm.embeddings.token_embedding = emb
    model.config.vocab_size = 49410
    pad = 0 if proj else 49407
    ids = torch.full((3, 77), pad, dtype=torch.int64)
    ids[0, :len(CAPTION)] = torch.tensor(CAPTION)
    ids[1, :len(NEWTOK)] = torch.tensor(NEWTOK)
    ids[2] = torch.randint(0, 49406, (77,), generator=g)
    ids[2, 0], ids[2, 76] = 49406, 49407
    out = model(input_ids=ids, output_hidden_states=True)
    hs, last = out.hidden_states, out.last_hidden_state
    first_eos = torch.stack([(row == 49407).nonzero()[0, 0] for row in ids])
    rows = torch.arange(3)
    pooled = last[rows, first_eos]
    assert torch.allclose(last, tm.final_layer_norm(hs[-1]), atol=1e-6)
    t = {"input_ids": ids, "new_rows": new_rows, "last_hidden_state": last, "pooled": pooled,
         "pooled_argmax": last[rows, ids.argmax(-1)]}
    t.update({f"hidden_states.{i}": h for i, h in enumerate(hs)})
    if proj:
        t["text_embeds"] = model.text_projection(pooled)
        assert torch.allclose(t["text_embeds"], out.text_embeds, atol=1e-6)
    else:
        assert torch.allclose(pooled, out.pooler_output, atol=1e-6)
    final_pooled = t["text_embeds"] if proj else pooled
    t["R_pen"] = torch.randn(hs[-2].shape, generator=g)
    t["R_pool"] = torch.randn(final_pooled.shape, generator=g)
    loss = (hs[-2] * t["R_pen"]).sum() + (final_pooled * t["R_pool"]).sum()
    loss.backward()
    t["loss"] = loss.detach()
    t["grad_new_rows"] = emb.weight.grad[49408:49410]
    t["grad_old_row_320"] = emb.weight.grad[320]
    t = {k: v.detach().contiguous() for k, v in t.items()}
    save_file(t, os.path.join(outdir, name, "parity.safetensors"))
    print(f"  parity: {len(hs)} hidden_states, loss {loss.item():.4f}, |last| max {last.abs().max():.3f}, "
          f"|grad_new_rows| {t['grad_new_rows'].norm():.4f}, |grad_row_320| {t['grad_old_row_320'].norm():.4f}, "
          f"pooled_argmax differs on rows {[i for i in range(3) if not torch.equal(ids[i].argmax(), first_eos[i])]}")


def openclip_keys(sd, n_layers, prefix):
    """HF CLIPTextModelWithProjection state dict (hub names) -> SGM / open_clip names."""
    out = {prefix + "token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
           prefix + "positional_embedding": sd["text_model.embeddings.position_embedding.weight"]}
    for i in range(n_layers):
        h, o = f"text_model.encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for wb in ("weight", "bias"):
            out[o + "ln_1." + wb] = sd[h + "layer_norm1." + wb]
            out[o + f"attn.in_proj_{wb}"] = torch.cat([sd[h + f"self_attn.{p}_proj.{wb}"] for p in "qkv"], 0)
            out[o + "attn.out_proj." + wb] = sd[h + "self_attn.out_proj." + wb]
            out[o + "ln_2." + wb] = sd[h + "layer_norm2." + wb]
            out[o + "mlp.c_fc." + wb] = sd[h + "mlp.fc1." + wb]
            out[o + "mlp.c_proj." + wb] = sd[h + "mlp.fc2." + wb]
    for wb in ("weight", "bias"):
        out[prefix + "ln_final." + wb] = sd["text_model.final_layer_norm." + wb]
    out[prefix + "text_projection"] = sd["text_projection.weight"].t()
    out[prefix + "logit_scale"] = torch.tensor(4.6052)  # ln(100); present in real SGM files, not a TE weight
    return {k: v.contiguous() for k, v in out.items()}


def single_file(outdir, te1, te2):
    p1, p2 = "conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."
    sd1, sd2 = hub_state_dict(te1), hub_state_dict(te2)
    sf = {p1 + k: v for k, v in sd1.items()}
    sf[p1 + "text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64)[None]
    sf.update(openclip_keys(sd2, te2.config.num_hidden_layers, p2))
    g = torch.Generator().manual_seed(7)
    sf["model.diffusion_model.conv_in.weight"] = torch.randn(4, 4, 3, 3, generator=g).half()
    sf["model.diffusion_model.conv_in.bias"] = torch.randn(4, generator=g).half()
    sf["first_stage_model.encoder.conv_in.weight"] = torch.randn(8, 3, 3, 3, generator=g)
    path = os.path.join(outdir, "single_file_text.safetensors")
    save_file(sf, path)
    print(f"single_file_text.safetensors: {len(sf)} tensors")
    try:  # round-trip through diffusers' own SGM -> HF converters
        from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint
        back = load_file(path)
        c1 = convert_ldm_clip_checkpoint(back)
        c2 = convert_open_clip_checkpoint(te2, back, prefix=p2)
        ok1 = all(torch.equal(c1[k], v) for k, v in sd1.items())
        ok2 = set(c2) == set(sd2) and all(torch.equal(c2[k], v) for k, v in sd2.items())
        print(f"  diffusers round trip: te1 {'OK' if ok1 else 'MISMATCH'} (extra keys {sorted(set(c1) - set(sd1))}), "
              f"te2 {'OK' if ok2 else 'MISMATCH'} (extra {sorted(set(c2) - set(sd2))}, "
              f"missing {sorted(set(sd2) - set(c2))})")
    except ImportError as e:
        print(f"  diffusers round trip skipped: {e}")


def full_size(outdir):
    result = {}
    for name, (cls, kw) in FULL.items():
        cfg = CLIPTextConfig(**FULL_COMMON, **kw)
        cfg.architectures = [cls.__name__]
        with torch.device("meta"):
            model = cls(cfg)
        d = os.path.join(outdir, "full_size", name)
        cfg.save_pretrained(d)
        sd = model.state_dict()
        params = dict(model.named_parameters())
        n = sum(p.numel() for p in params.values())
        result[name] = {
            "config": json.load(open(os.path.join(d, "config.json"))), "parameters": n,
            "tensors": [[k, list(v.shape)] for k, v in sd.items() if k in params],
            "buffers": [[k, list(v.shape)] for k, v in sd.items() if k not in params],
            "non_persistent_buffers": [[k, list(b.shape)] for k, b in model.named_buffers() if k not in sd],
            "hub_key_prefix": "" if cls is CLIPTextModelWithProjection else "text_model.",
        }
        print(f"{name}: {cls.__name__} {n:,} parameters, {len(sd)} state_dict entries, "
              f"buffers in state_dict: {result[name]['buffers']}, non-persistent: "
              f"{result[name]['non_persistent_buffers']}")
    with open(os.path.join(outdir, "full_size_keys.json"), "w") as f:
        json.dump(result, f, indent=1)
    assert result["text_encoder"]["parameters"] == 123_060_480
    assert result["text_encoder_2"]["parameters"] == 694_659_840


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    t0 = time.time()
    models = {}
    for name in TINY:
        models[name], seed = build_tiny(outdir, name)
    single_file(outdir, models["te1_a"], models["te2_a"])  # before parity grows the embeddings
    for name, model in models.items():
        parity(outdir, name, model, TINY[name][1])
    full_size(outdir)
    print(f"done in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
