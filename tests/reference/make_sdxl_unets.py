#!/usr/bin/env python3
"""Tiny seeded SDXL-shaped UNet2DConditionModels + reference outputs/gradients + an SGM single file.

  make_sdxl_unets.py OUTDIR     (run: .venv/bin/python tests/reference/make_sdxl_unets.py /tmp/xlref)

Writes (everything fp32, diffusers 0.42, default attention processor = AttnProcessor2_0 / SDPA):
  OUTDIR/<name>/config.json, diffusion_pytorch_model.safetensors   (save_pretrained) for
      unet_sdxl_test  diffusers' own SDXL pipeline fast-test UNet, copied exactly from
                      tests/pipelines/stable_diffusion_xl/test_stable_diffusion_xl.py get_dummy_components()
                      (block_out (2,4), norm_num_groups 1, heads (2,4), transformer layers (1,2)).
      unet_deep       3 levels [32,48,64], layers_per_block 2, transformer_layers_per_block [1,2,3] (mid 3),
                      heads [2,3,8] (head dims 16 and 8), norm 8, cross_attention_dim 48, text_embeds 40.
      unet_odd        2 levels [16,40], layers_per_block 1, heads [1,5], transformer_layers_per_block given as
                      the int 1, norm 8, cross_attention_dim 24, addition_time_embed_dim 4, text_embeds 20,
                      non-square sample 12x20.
      Weights: randomize_() from make_sdxl_vaes.py (seeded normal, std clamp(1/sqrt(fan_in),0.05,0.2),
      biases N(0,.1^2), norm weights 1+N(0,.1^2)).
  OUTDIR/<name>/parity.safetensors: sample [2,4,H,W], timestep f32 [2] = [10, 750],
      encoder_hidden_states [2,7,cross_attention_dim], text_embeds [2,T], time_ids f32 [2,6] =
      [[512,512,0,0,512,512],[768,1024,12,40,512,512]], output (= unet(...).sample), R (randn like output),
      and for loss = sum(output*R): grad_sample, grad_encoder_hidden_states, grad_text_embeds and
      grad.<param> for the parameters listed in GRAD_PARAMS (the first transformer block is the first
      "...transformer_blocks.0" in named_parameters order, i.e. down_blocks.1.attentions.0).
  OUTDIR/unet_sdxl_test/single_file.safetensors: an original-layout (SGM) SDXL checkpoint holding
      model.diffusion_model.* = unet_sdxl_test, first_stage_model.* = vae_b of make_sdxl_vaes.py (same seed,
      so equal to OUTDIR/vae_b if that script is run too), and a few dummy conditioner.embedders.* keys
      (incl. int64 position_ids and the key diffusers uses to detect "xl_base"). Both parts are checked by
      diffusers' own convert_ldm_unet_checkpoint / convert_ldm_vae_checkpoint and from_single_file.
"""
import os
import re
import sys
import tempfile
import time

import torch
from safetensors.torch import load_file, save_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_sdxl_vaes import build_vae, check_vae_roundtrip, randomize_, vae_to_sgm  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402

SDXL_LAYOUT = dict(in_channels=4, out_channels=4, use_linear_projection=True, addition_embed_type="text_time")
UNETS = {  # name: (seed, kwargs, text_embeds dim, sample H, W)
    # Exactly diffusers' StableDiffusionXLPipelineFastTests.get_dummy_components() UNet (time_cond_proj_dim=None).
    "unet_sdxl_test": (401, dict(
        block_out_channels=(2, 4), layers_per_block=2, time_cond_proj_dim=None, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80, cross_attention_dim=64, norm_num_groups=1), 32, 16, 16),
    "unet_deep": (402, dict(
        SDXL_LAYOUT, block_out_channels=(32, 48, 64), layers_per_block=2, sample_size=16,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 3, 8),
        transformer_layers_per_block=(1, 2, 3), norm_num_groups=8, cross_attention_dim=48,
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=40 + 6 * 8), 40, 16, 16),
    "unet_odd": (403, dict(
        SDXL_LAYOUT, block_out_channels=(16, 40), layers_per_block=1, sample_size=16,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(1, 5), transformer_layers_per_block=1, norm_num_groups=8, cross_attention_dim=24,
        addition_time_embed_dim=4, projection_class_embeddings_input_dim=20 + 6 * 4), 20, 12, 20),
}
TIME_IDS = [[512, 512, 0, 0, 512, 512], [768, 1024, 12, 40, 512, 512]]


def grad_params(unet):
    names = [n for n, _ in unet.named_parameters()]
    tb = next(n for n in names if re.search(r"transformer_blocks\.0\.attn1\.to_q\.weight$", n))[: -len("attn1.to_q.weight")]
    nu = len(unet.up_blocks)
    nr = len(unet.up_blocks[-1].resnets)
    want = ["conv_in.weight", "time_embedding.linear_1.weight", "add_embedding.linear_1.weight",
            "down_blocks.0.resnets.0.conv1.weight", tb + "attn1.to_q.weight", tb + "attn2.to_k.weight",
            tb + "ff.net.0.proj.weight", "mid_block.resnets.0.conv2.weight",
            f"up_blocks.{nu - 1}.resnets.{nr - 1}.conv_shortcut.weight", "conv_out.weight"]
    return [n for n in want if n in names]


def make_parity(name, unet):
    seed, kw, ted, H, W = UNETS[name]
    g = torch.Generator().manual_seed(2000 + seed)
    sample = torch.randn(2, kw["in_channels"], H, W, generator=g).requires_grad_(True)
    timestep = torch.tensor([10.0, 750.0], dtype=torch.float32)
    ehs = torch.randn(2, 7, kw["cross_attention_dim"], generator=g).requires_grad_(True)
    text_embeds = torch.randn(2, ted, generator=g).requires_grad_(True)
    time_ids = torch.tensor(TIME_IDS, dtype=torch.float32)
    unet.zero_grad(set_to_none=True)
    out = unet(sample, timestep, encoder_hidden_states=ehs,
               added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample
    R = torch.randn(out.shape, generator=g)
    (out * R).sum().backward()
    t = dict(sample=sample, timestep=timestep, encoder_hidden_states=ehs, text_embeds=text_embeds,
             time_ids=time_ids, output=out, R=R, grad_sample=sample.grad,
             grad_encoder_hidden_states=ehs.grad, grad_text_embeds=text_embeds.grad)
    params = dict(unet.named_parameters())
    for n in grad_params(unet):
        t["grad." + n] = params[n].grad
    return {k: v.detach().float().contiguous() for k, v in t.items()}


RES = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
       "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
       "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
       "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def unet_to_sgm(sd, cfg, prefix="model.diffusion_model."):
    """diffusers UNet2DConditionModel (SDXL layout) state dict -> original SGM keys (inverse of
    diffusers' convert_ldm_unet_checkpoint). Level i, layer j: input_blocks.{(L+1)i+j+1}, downsampler
    input_blocks.{(L+1)(i+1)}.0.op, output_blocks.{(L+1)i+j}; upsampler output_blocks.{(L+1)i+L}.{2|1}.conv
    (2 when that up block has attentions, 1 when not); proj_in/proj_out stay 2-D (use_linear_projection)."""
    L = cfg["layers_per_block"]
    assert isinstance(L, int)
    up_attn = {int(k.split(".")[1]) for k in sd if re.match(r"up_blocks\.\d+\.attentions\.", k)}
    out = {}
    for k, v in sd.items():
        m = re.match(r"(.+)\.(weight|bias)$", k)
        if m and m.group(1) in TOP:
            nk = f"{TOP[m.group(1)]}.{m.group(2)}"
        elif m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(.+)$", k):
            i, j, mod, rest = int(m[1]), int(m[2]), m[3], m[4]
            nk = f"input_blocks.{(L + 1) * i + j + 1}.0.{RES[mod]}.{rest}"
        elif m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$", k):
            nk = f"input_blocks.{(L + 1) * int(m[1]) + int(m[2]) + 1}.1.{m[3]}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$", k):
            nk = f"input_blocks.{(L + 1) * (int(m[1]) + 1)}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.([01])\.(\w+)\.(.+)$", k):
            nk = f"middle_block.{2 * int(m[1])}.{RES[m[2]]}.{m[3]}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.+)$", k):
            nk = f"middle_block.1.{m[1]}"
        elif m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(.+)$", k):
            nk = f"output_blocks.{(L + 1) * int(m[1]) + int(m[2])}.0.{RES[m[3]]}.{m[4]}"
        elif m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$", k):
            nk = f"output_blocks.{(L + 1) * int(m[1]) + int(m[2])}.1.{m[3]}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$", k):
            i = int(m[1])
            nk = f"output_blocks.{(L + 1) * i + L}.{2 if i in up_attn else 1}.conv.{m[2]}"
        else:
            raise KeyError(f"unmapped UNet key {k}")
        assert prefix + nk not in out, nk
        out[prefix + nk] = v.contiguous()
    return out


def dummy_conditioner():
    g = torch.Generator().manual_seed(7)
    p0, p1 = "conditioner.embedders.0.transformer.text_model.", "conditioner.embedders.1.model."
    return {p0 + "embeddings.position_ids": torch.arange(77, dtype=torch.int64)[None],
            p0 + "final_layer_norm.weight": torch.ones(8), p0 + "final_layer_norm.bias": torch.zeros(8),
            p1 + "transformer.resblocks.9.mlp.c_proj.bias": torch.randn(8, generator=g),  # diffusers' xl_base key
            p1 + "text_projection": torch.randn(8, 8, generator=g), p1 + "ln_final.weight": torch.ones(8)}


def check_unet_roundtrip(sgm, unet):
    """diffusers' own convert_ldm_unet_checkpoint must give back exactly unet.state_dict()."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
    ref = unet.state_dict()
    back = convert_ldm_unet_checkpoint(sgm, dict(unet.config))
    bad = [k for k in ref if k in back and not (back[k].shape == ref[k].shape and torch.equal(back[k], ref[k]))]
    return sorted(set(ref) - set(back)), sorted(set(back) - set(ref)), bad


def write_single_file(outdir, unet):
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    vae = build_vae("vae_b")
    ckpt = {**unet_to_sgm(unet.state_dict(), dict(unet.config)),
            **vae_to_sgm(vae.state_dict(), len(vae.config.block_out_channels)), **dummy_conditioner()}
    path = os.path.join(outdir, "unet_sdxl_test", "single_file.safetensors")
    save_file(ckpt, path)
    ckpt = load_file(path)
    um, ue, ub = check_unet_roundtrip(ckpt, unet)
    res = dict(model_type=infer_diffusers_model_type(ckpt), sgm_keys=len(ckpt),
               unet_missing=um, unet_extra=ue, unet_bad=ub)
    vm, ve, vb = check_vae_roundtrip(ckpt, vae)
    res.update(vae_missing=vm, vae_extra=ve, vae_bad=vb)
    # end to end through diffusers' public loader (local config folders, no network)
    for cls, model, cfg in ((UNet2DConditionModel, unet, "unet_sdxl_test"), (AutoencoderKL, vae, "vae_b")):
        try:
            with tempfile.TemporaryDirectory() as tmp:
                model.save_config(tmp)
                m2 = cls.from_single_file(path, config=tmp, local_files_only=True)
            s1, s2 = model.state_dict(), m2.state_dict()
            res[f"from_single_file_{cfg}"] = set(s1) == set(s2) and all(torch.equal(s1[k], s2[k]) for k in s1)
        except Exception as e:  # reported, then fails the assert in main()
            res[f"from_single_file_{cfg}"] = f"error: {type(e).__name__}: {e}"[:300]
    return res


def main(outdir):
    torch.set_num_threads(1)
    for name, (seed, kw, ted, H, W) in UNETS.items():
        t0 = time.time()
        torch.manual_seed(seed)
        unet = randomize_(UNet2DConditionModel(**kw).float().eval(), seed)
        d = os.path.join(outdir, name)
        unet.save_pretrained(d, safe_serialization=True)
        sd = load_file(os.path.join(d, "diffusion_pytorch_model.safetensors"))
        assert set(sd) == set(unet.state_dict()) and all(torch.equal(sd[k], v) for k, v in unet.state_dict().items())
        p = make_parity(name, unet)
        save_file(p, os.path.join(d, "parity.safetensors"))
        procs = sorted({type(x).__name__ for x in unet.attn_processors.values()})
        print(f"{name}: {sum(x.numel() for x in unet.parameters())} params, {len(sd)} tensors, processors {procs}, "
              f"output std {p['output'].std():.3f}, grad_sample std {p['grad_sample'].std():.3g}, "
              f"{time.time() - t0:.1f}s")
        print("  grads:", ", ".join(f"{k[5:]} ({p[k].norm():.3g})" for k in p if k.startswith("grad.")))
        sgm = unet_to_sgm(unet.state_dict(), dict(unet.config))
        rt = check_unet_roundtrip(sgm, unet)
        ups = sorted(k[len("model.diffusion_model."):-7] for k in sgm if re.search(r"output_blocks.*conv.weight$", k))
        print(f"  SGM round trip (missing, extra, mismatched): {rt}; upsamplers {ups}")
        assert not any(rt)
        if name == "unet_sdxl_test":
            t1 = time.time()
            res = write_single_file(outdir, unet)
            print(f"  single file: {res} ({time.time() - t1:.1f}s)")
            assert res["model_type"] == "xl_base"
            assert res["from_single_file_unet_sdxl_test"] is True and res["from_single_file_vae_b"] is True
            assert not any(res[k] for k in ("unet_missing", "unet_extra", "unet_bad", "vae_missing", "vae_extra",
                                             "vae_bad"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
