#!/usr/bin/env python3
"""A trained run's files loaded by the tools people use, checked against xltune's own outputs.

  train_interop.py MODEL_DIR RUN_DIR OURS     (OURS: written by the C++ test TrainInterop.*)

OURS holds fixed inputs (sample, timesteps, time_ids, the token ids of a prompt with <s0><s1>)
and xltune's outputs for them: the text conditioning with the trained token rows, and the UNet
output with and without the trained LoRA. Checked, each against those outputs:
  1. diffusers' pipe.load_lora_weights(lora_kohya.safetensors): every key used (no warning
     about unexpected or unused keys), one LoRA layer per xltune adapter, same UNet output;
  2. pipe.unet.load_lora_adapter(lora.safetensors state dict, prefix=None) (the reference layout
     as current diffusers reads it), same output;
  3. the reference trainer's own recipe (predict.py load_trained_weights: LoRAAttnProcessor2_0
     per attention, unet.load_state_dict(strict=False)), transcribed with diffusers 0.19's
     processor, same output;
  4. pipe.load_textual_inversion of embeddings_sdxl.safetensors' clip_l / clip_g into both
     encoders, and the reference's load_embeddings recipe with embeddings.pti: the prompt
     tokenizes to xltune's ids and encodes to xltune's conditioning;
  5. trained_model.tar holds what the reference's tar holds, and special_params.json maps TOK.
"""
import json
import logging
import os
import sys
import tarfile
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
import torch
from safetensors.torch import load_file
from diffusers import StableDiffusionXLPipeline
from diffusers.utils import logging as d_logging
from transformers.utils import logging as t_logging

# max |diff| / max(1, max |value|); measured 7.3e-7 with ATen's default CPU kernels, 6.5e-7
# natively (AVX-512), 6.2e-7 with avx2 (fp32 summation order).
TOL = 3e-6


def scaled(a, b):
    return ((a - b).abs().max() / max(1.0, b.abs().max().item())).item()


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def unet_out(unet, o):
    with torch.no_grad():
        return unet(o["sample"], o["timesteps"], encoder_hidden_states=o["context"].repeat(2, 1, 1),
                    added_cond_kwargs={"text_embeds": o["pooled"].repeat(2, 1), "time_ids": o["time_ids"]}).sample


class LoRALinearLayer(torch.nn.Module):
    """diffusers 0.19's LoRALinearLayer: up(down(x)), down [rank, in], up [out, rank]."""

    def __init__(self, in_features, out_features, rank):
        super().__init__()
        self.down = torch.nn.Linear(in_features, rank, bias=False)
        self.up = torch.nn.Linear(rank, out_features, bias=False)

    def forward(self, x):
        return self.up(self.down(x.to(self.down.weight.dtype))).to(x.dtype)


class LoRAAttnProcessor2_0(torch.nn.Module):
    """diffusers 0.19's LoRAAttnProcessor2_0 (what the reference's predict.py builds), for the
    self- and cross-attention that SDXL's transformer blocks use (no group norm, no spatial
    norm, 3-d hidden states)."""

    def __init__(self, hidden_size, cross_attention_dim=None, rank=4):
        super().__init__()
        self.to_q_lora = LoRALinearLayer(hidden_size, hidden_size, rank)
        self.to_k_lora = LoRALinearLayer(cross_attention_dim or hidden_size, hidden_size, rank)
        self.to_v_lora = LoRALinearLayer(cross_attention_dim or hidden_size, hidden_size, rank)
        self.to_out_lora = LoRALinearLayer(hidden_size, hidden_size, rank)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, scale=1.0):
        b = hidden_states.shape[0]
        query = attn.to_q(hidden_states) + scale * self.to_q_lora(hidden_states)
        ctx = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        key = attn.to_k(ctx) + scale * self.to_k_lora(ctx)
        value = attn.to_v(ctx) + scale * self.to_v_lora(ctx)
        head_dim = key.shape[-1] // attn.heads
        q, k, v = (t.view(b, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
        h = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        h = h.transpose(1, 2).reshape(b, -1, attn.heads * head_dim).to(q.dtype)
        return attn.to_out[0](h) + scale * self.to_out_lora(h)


def reference_recipe(unet, tensors):
    """predict.py load_trained_weights, LoRA branch (fp32 here, on the CPU)."""
    name_rank_map = {}
    for tk, tv in tensors.items():
        if tk.endswith("up.weight"):
            name_rank_map[".".join(tk.split(".")[:-3])] = tv.shape[1]
    procs = {}
    for name in unet.attn_processors.keys():
        cross = None if name.endswith("attn1.processor") else unet.config.cross_attention_dim
        if name.startswith("mid_block"):
            hidden = unet.config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(unet.config.block_out_channels))[int(name[len("up_blocks.")])]
        else:
            hidden = unet.config.block_out_channels[int(name[len("down_blocks.")])]
        procs[name] = LoRAAttnProcessor2_0(hidden_size=hidden, cross_attention_dim=cross, rank=name_rank_map[name])
    unet.set_attn_processor(procs)
    result = unet.load_state_dict(tensors, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys[:3]


def main():
    model, run, ours_path = sys.argv[1:4]
    ours = load_file(ours_path)
    worst = {}
    handler = Warnings()
    for lg in (d_logging.get_logger("diffusers"), logging.getLogger("diffusers"), logging.getLogger("peft")):
        lg.addHandler(handler)
    d_logging.set_verbosity_warning()
    t_logging.set_verbosity_error()
    pipe = StableDiffusionXLPipeline.from_pretrained(model, torch_dtype=torch.float32)
    base = unet_out(pipe.unet, ours)
    worst["base UNet (no LoRA)"] = scaled(base, ours["unet_base"])

    # 1. kohya keys through load_lora_weights.
    handler.messages.clear()
    pipe.load_lora_weights(os.path.join(run, "lora_kohya.safetensors"))
    kohya_keys = load_file(os.path.join(run, "lora_kohya.safetensors")).keys()
    layers = sum(1 for m in pipe.unet.modules() if hasattr(m, "lora_A") and len(m.lora_A) > 0)
    assert layers * 3 == len(kohya_keys), (layers, len(kohya_keys))
    # (The file has no text-encoder LoRA, so diffusers' notes that it found none for the encoders are expected.)
    bad = [m for m in handler.messages if not m.startswith("No LoRA keys associated to CLIPText")]
    assert not bad, bad
    worst["kohya file via load_lora_weights"] = scaled(unet_out(pipe.unet, ours), ours["unet_lora"])
    pipe.unload_lora_weights()
    worst["after unload_lora_weights"] = scaled(unet_out(pipe.unet, ours), ours["unet_base"])

    # 2. The reference layout through load_lora_adapter(prefix=None).
    ref = load_file(os.path.join(run, "lora.safetensors"))
    handler.messages.clear()
    pipe.unet.load_lora_adapter(ref, prefix=None, adapter_name="reference")
    assert not handler.messages, handler.messages
    worst["lora.safetensors via load_lora_adapter(prefix=None)"] = scaled(unet_out(pipe.unet, ours), ours["unet_lora"])
    pipe.unet.delete_adapters("reference")

    # 3. The reference trainer's own loading recipe, on a fresh UNet.
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet")
    reference_recipe(unet, dict(ref))
    worst["lora.safetensors via the reference's predict.py recipe"] = scaled(unet_out(unet, ours), ours["unet_lora"])

    # 4. The token rows: diffusers' load_textual_inversion, and the reference's load_embeddings.
    emb = load_file(os.path.join(run, "embeddings_sdxl.safetensors"))
    pipe.load_textual_inversion(emb["clip_l"], token=["<s0>", "<s1>"], text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(emb["clip_g"], token=["<s0>", "<s1>"], text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    prompt = "a photo of <s0><s1> on the moon"

    def encode(tok1, tok2, te1, te2):
        ids1 = tok1(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids
        ids2 = tok2(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids
        assert torch.equal(ids1, ours["input_ids_1"]) and torch.equal(ids2, ours["input_ids_2"]), (ids1, ids2)
        for te in (te1, te2):
            getattr(te, "text_model", te).eos_token_id = 49407  # pool at the first end-of-text token
        with torch.no_grad():
            a = te1(ids1, output_hidden_states=True)
            b = te2(ids2, output_hidden_states=True)
        return torch.cat([a.hidden_states[-2], b.hidden_states[-2]], -1), b.text_embeds

    ctx, pooled = encode(pipe.tokenizer, pipe.tokenizer_2, pipe.text_encoder, pipe.text_encoder_2)
    worst["context via load_textual_inversion"] = scaled(ctx, ours["context"])
    worst["pooled via load_textual_inversion"] = scaled(pooled, ours["pooled"])

    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
    pti = load_file(os.path.join(run, "embeddings.pti"))
    tok1 = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer")
    tok2 = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer_2")
    te1 = CLIPTextModel.from_pretrained(model, subfolder="text_encoder")
    te2 = CLIPTextModelWithProjection.from_pretrained(model, subfolder="text_encoder_2")
    for idx, (tok, te) in enumerate(((tok1, te1), (tok2, te2))):  # the reference's load_embeddings
        rows = pti[f"text_encoders_{idx}"]
        tok.add_special_tokens({"additional_special_tokens": [f"<s{i}>" for i in range(rows.shape[0])]})
        te.resize_token_embeddings(len(tok))
        ids = tok.convert_tokens_to_ids([f"<s{i}>" for i in range(rows.shape[0])])
        with torch.no_grad():
            te.get_input_embeddings().weight[ids] = rows
    ctx2, pooled2 = encode(tok1, tok2, te1, te2)
    worst["context via the reference's load_embeddings"] = scaled(ctx2, ours["context"])
    worst["pooled via the reference's load_embeddings"] = scaled(pooled2, ours["pooled"])

    # 5. The tar and the trigger mapping.
    with tarfile.open(os.path.join(run, "trained_model.tar")) as t:
        names = t.getnames()
    for want in ("lora.safetensors", "embeddings.pti", "special_params.json"):
        assert want in names, names
    params = json.load(open(os.path.join(run, "special_params.json")))
    assert params == {"TOK": "<s0><s1>"}, params
    assert "TOK".join(["a photo of ", ""]).replace("TOK", params["TOK"]) == "a photo of <s0><s1>"

    ok = True
    for k, v in worst.items():
        print(f"{k:58s} max scaled |diff| {v:.2e}")
        ok &= v <= TOL
    print(f"{'OK' if ok else 'MISMATCH'} (tolerance {TOL:.0e}); {layers} LoRA layers from {len(kohya_keys)} kohya keys")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
