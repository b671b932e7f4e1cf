#!/usr/bin/env python3
"""Tiny seeded AutoencoderKL models (SDXL's VAE layout) + reference outputs/gradients for xltune's C++ VAE.

  make_sdxl_vaes.py OUTDIR      (run: .venv/bin/python tests/reference/make_sdxl_vaes.py /tmp/xlref)

Writes (everything fp32, diffusers 0.42 AutoencoderKL, default attention processor):
  OUTDIR/<name>/config.json, diffusion_pytorch_model.safetensors     (save_pretrained) for
      vae_a: block_out [8,16], layers_per_block 1, norm_num_groups 4, latent 4, sample_size 32,
             scaling_factor 0.13025 (2 levels: one downsample, latents are image/2)
      vae_b: block_out [16,16,32,32], layers_per_block 2, norm_num_groups 8, latent 4, force_upcast true,
             scaling_factor 0.13025 (4 levels like SDXL: latents are image/8)
      Weights: seeded normal, std clamp(1/sqrt(fan_in), 0.05, 0.2); biases N(0, 0.1^2);
      GroupNorm/LayerNorm weight 1 + N(0, 0.1^2), bias N(0, 0.1^2)  (see randomize_(), shared with
      make_sdxl_unets.py).
  OUTDIR/<name>/parity.safetensors:
      image [2,3,32,32] in [-1,1]; mean, logvar (encode(image).latent_dist; logvar clamped to [-30,20]);
      noise (seeded randn like mean); sample = mean + exp(0.5*logvar)*noise;
      z [2,4,16,16] (vae_a) / [2,4,8,8] (vae_b); decoded = decode(z).sample;
      R_dec (randn like decoded), grad_z = d/dz sum(decoded*R_dec);
      R_mean (randn like mean), grad_image = d/dimage sum(mean*R_mean).
  Nothing is scaled by scaling_factor here (encode/decode work on unscaled latents).
"""
import math
import os
import sys
import time

import torch
from safetensors.torch import load_file, save_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from diffusers import AutoencoderKL  # noqa: E402
from diffusers.utils import logging as d_logging  # noqa: E402

d_logging.set_verbosity_error()

VAES = {  # name: (seed, AutoencoderKL kwargs, latent spatial size used for the decode test)
    "vae_a": (301, dict(block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=4, latent_channels=4,
                        sample_size=32, down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, scaling_factor=0.13025), 16),
    "vae_b": (302, dict(block_out_channels=[16, 16, 32, 32], layers_per_block=2, norm_num_groups=8,
                        latent_channels=4, sample_size=32, down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, force_upcast=True, scaling_factor=0.13025), 8),
}


@torch.no_grad()
def randomize_(model, seed):
    """Overwrite every parameter with seeded normals (deterministic: named_modules order)."""
    g = torch.Generator().manual_seed(seed)
    norm_types = (torch.nn.GroupNorm, torch.nn.LayerNorm)
    for _, mod in model.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if isinstance(mod, norm_types):
                p.copy_(1.0 + 0.1 * r if pname == "weight" else 0.1 * r)
            elif p.ndim == 1:
                p.copy_(0.1 * r)
            else:
                fan_in = p[0].numel()
                p.copy_(min(0.2, max(0.05, 1.0 / math.sqrt(fan_in))) * r)
    return model


def build_vae(name):
    seed, kw, _ = VAES[name]
    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, **kw).float().eval()
    return randomize_(vae, seed)


def vae_to_sgm(sd, n_levels, prefix="first_stage_model."):
    """diffusers AutoencoderKL state dict -> original (SGM/LDM) first_stage_model keys.
    Inverse of diffusers' convert_ldm_vae_checkpoint: attention 1x1 weights become [C,C,1,1] convs."""
    out = {}
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    for k, v in sd.items():
        parts = k.split(".")
        side = parts[0]  # encoder / decoder / quant_conv / post_quant_conv
        rest = ".".join(parts[1:])
        if side in ("quant_conv", "post_quant_conv"):
            nk = k
        elif rest.startswith("conv_norm_out."):
            nk = f"{side}.norm_out.{parts[-1]}"
        elif rest.startswith(("conv_in.", "conv_out.")):
            nk = k
        elif rest.startswith("mid_block.resnets."):
            i = int(parts[3])
            nk = f"{side}.mid.block_{i + 1}." + ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
        elif rest.startswith("mid_block.attentions.0."):
            sub = ".".join(parts[4:-1])
            nk = f"{side}.mid.attn_1.{attn[sub]}.{parts[-1]}"
            if parts[-1] == "weight" and sub != "group_norm":
                v = v[:, :, None, None]
        elif rest.startswith("down_blocks."):
            i = int(parts[2])
            if parts[3] == "resnets":
                nk = f"encoder.down.{i}.block.{parts[4]}." + ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
            else:  # downsamplers.0.conv.*
                nk = f"encoder.down.{i}.downsample.conv.{parts[-1]}"
        elif rest.startswith("up_blocks."):
            j = n_levels - 1 - int(parts[2])
            if parts[3] == "resnets":
                nk = f"decoder.up.{j}.block.{parts[4]}." + ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
            else:  # upsamplers.0.conv.*
                nk = f"decoder.up.{j}.upsample.conv.{parts[-1]}"
        else:
            raise KeyError(f"unmapped VAE key {k}")
        assert prefix + nk not in out, nk
        out[prefix + nk] = v.contiguous()
    return out


def check_vae_roundtrip(sgm, vae):
    """diffusers' own convert_ldm_vae_checkpoint must give back exactly vae.state_dict()."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    ref = vae.state_dict()
    back = convert_ldm_vae_checkpoint(sgm, dict(vae.config))
    missing, extra = sorted(set(ref) - set(back)), sorted(set(back) - set(ref))
    bad = [k for k in ref if k in back and not (back[k].shape == ref[k].shape and torch.equal(back[k], ref[k]))]
    return missing, extra, bad


def make_parity(name, vae):
    _, kw, zs = VAES[name]
    g = torch.Generator().manual_seed(1000 + VAES[name][0])
    image = (torch.rand(2, 3, 32, 32, generator=g) * 2 - 1).requires_grad_(True)
    dist = vae.encode(image).latent_dist
    mean, logvar = dist.mean, dist.logvar
    R_mean = torch.randn(mean.shape, generator=g)
    (grad_image,) = torch.autograd.grad((mean * R_mean).sum(), image)
    noise = torch.randn(mean.shape, generator=g)
    sample = mean + torch.exp(0.5 * logvar) * noise
    assert torch.allclose(sample, dist.mean + dist.std * noise)
    z = torch.randn(2, kw["latent_channels"], zs, zs, generator=g).requires_grad_(True)
    decoded = vae.decode(z).sample
    R_dec = torch.randn(decoded.shape, generator=g)
    (grad_z,) = torch.autograd.grad((decoded * R_dec).sum(), z)
    t = dict(image=image, mean=mean, logvar=logvar, noise=noise, sample=sample, z=z, decoded=decoded,
             R_dec=R_dec, grad_z=grad_z, R_mean=R_mean, grad_image=grad_image)
    return {k: v.detach().contiguous().float() for k, v in t.items()}


def main(outdir):
    torch.set_num_threads(1)
    for name in VAES:
        t0 = time.time()
        vae = build_vae(name)
        d = os.path.join(outdir, name)
        vae.save_pretrained(d, safe_serialization=True)
        # reload check: saved file == in-memory weights
        sd = load_file(os.path.join(d, "diffusion_pytorch_model.safetensors"))
        assert set(sd) == set(vae.state_dict()) and all(torch.equal(sd[k], v) for k, v in vae.state_dict().items())
        p = make_parity(name, vae)
        save_file(p, os.path.join(d, "parity.safetensors"))
        sgm = vae_to_sgm(vae.state_dict(), len(vae.config.block_out_channels))
        missing, extra, bad = check_vae_roundtrip(sgm, vae)
        nparam = sum(x.numel() for x in vae.parameters())
        print(f"{name}: {nparam} params, {len(sd)} tensors; mean std {p['mean'].std():.3f} logvar "
              f"[{p['logvar'].min():.2f},{p['logvar'].max():.2f}] decoded std {p['decoded'].std():.3f} "
              f"grad_z std {p['grad_z'].std():.3f} grad_image std {p['grad_image'].std():.3f}; "
              f"SGM round trip: missing {missing} extra {extra} mismatched {bad}; {time.time() - t0:.1f}s")
        assert not (missing or extra or bad)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
