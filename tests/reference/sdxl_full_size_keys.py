#!/usr/bin/env python3
"""Key/shape lists and config.json files of SDXL base 1.0's real UNet and VAE (built on the meta device, no
weights), plus the config of a mid-size SDXL-layout UNet for CPU memory/benchmark tests.

  sdxl_full_size_keys.py OUTDIR      (run: .venv/bin/python tests/reference/sdxl_full_size_keys.py /tmp/xlref)

Writes:
  OUTDIR/full_size/unet/config.json, OUTDIR/full_size/vae/config.json
      What diffusers 0.42's save_config writes for the SDXL base 1.0 arguments (every field, including ones
      the hub's files (written by diffusers 0.19/0.20) lack, e.g. attention_type, dropout,
      reverse_transformer_layers_per_block, mid_block_add_attention, use_quant_conv, shift_factor).
      Values equal the hub's unet/config.json and vae/config.json (upcast_attention null, sample_size 128 / 1024,
      scaling_factor 0.13025, force_upcast true).
  OUTDIR/full_size_keys.json = {"unet": {"config": {...}, "parameters": N, "tensors": [[key, [shape]], ...]
      (parameters, state_dict() order), "buffers": [...] (persistent non-parameter state_dict entries),
      "non_persistent_buffers": [...]}, "vae": {...}, "mid_unet_parameters": N}; same entry layout as
      make_clip_text_encoders.py's file of the same name, so give the two scripts different OUTDIRs.
  OUTDIR/mid/unet/config.json    SDXL layout scaled down: block_out [64,128,256], heads [1,2,4],
      transformer_layers_per_block [1,2,2], cross_attention_dim 256, addition_time_embed_dim 32,
      projection_class_embeddings_input_dim 256+6*32 = 448, norm_num_groups 32 (no weights; its parameter
      count is printed and stored in full_size_keys.json["mid_unet_parameters"]).
Checks (asserts) UNet 2,567,463,684 and VAE 83,653,863 parameters.
"""
import json
import os
import sys
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402

SDXL_UNET = dict(  # SGM configs/inference/sd_xl_base.yaml as diffusers maps it (hub unet/config.json values)
    sample_size=128, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    only_cross_attention=False, block_out_channels=(320, 640, 1280), layers_per_block=2, downsample_padding=1,
    mid_block_scale_factor=1, act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=2048,
    transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), use_linear_projection=True,
    upcast_attention=None, addition_embed_type="text_time", addition_time_embed_dim=256,
    addition_embed_type_num_heads=64, projection_class_embeddings_input_dim=2816,
    resnet_time_scale_shift="default", time_embedding_type="positional", conv_in_kernel=3, conv_out_kernel=3)
SDXL_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=1024, scaling_factor=0.13025,
    force_upcast=True)
MID_UNET = dict(
    SDXL_UNET, sample_size=32, block_out_channels=(64, 128, 256), attention_head_dim=(1, 2, 4),
    transformer_layers_per_block=(1, 2, 2), cross_attention_dim=256, addition_time_embed_dim=32,
    projection_class_embeddings_input_dim=256 + 6 * 32, norm_num_groups=32)
EXPECTED = {"unet": 2_567_463_684, "vae": 83_653_863}


def describe(model):
    """Same layout as make_clip_text_encoders.py's full_size_keys.json entries."""
    sd = model.state_dict(keep_vars=True)
    params = dict(model.named_parameters())
    bufs = dict(model.named_buffers())
    return {
        "config": dict(json.loads(model.to_json_string())),
        "parameters": sum(p.numel() for p in params.values()),
        "tensors": [[k, list(v.shape)] for k, v in sd.items() if k in params],
        "buffers": [[k, list(v.shape)] for k, v in sd.items() if k not in params],
        "non_persistent_buffers": [[k, list(v.shape)] for k, v in bufs.items() if k not in sd],
    }


def build(cls, kw):
    with torch.device("meta"):
        return cls(**kw)


def main(outdir):
    t0 = time.time()
    res = {}
    for name, cls, kw in (("unet", UNet2DConditionModel, SDXL_UNET), ("vae", AutoencoderKL, SDXL_VAE)):
        m = build(cls, kw)
        m.save_config(os.path.join(outdir, "full_size", name))
        res[name] = describe(m)
        n = res[name]["parameters"]
        print(f"{name}: {n:,} parameters in {len(res[name]['tensors'])} tensors "
              f"(expected {EXPECTED[name]:,}: {'OK' if n == EXPECTED[name] else 'MISMATCH'}); "
              f"buffers {res[name]['buffers']}, non-persistent {res[name]['non_persistent_buffers']}")
        assert n == EXPECTED[name]
    mid = build(UNet2DConditionModel, MID_UNET)
    mid.save_config(os.path.join(outdir, "mid", "unet"))
    res["mid_unet_parameters"] = sum(p.numel() for p in mid.parameters())
    print(f"mid unet: {res['mid_unet_parameters']:,} parameters in {len(mid.state_dict())} tensors")
    with open(os.path.join(outdir, "full_size_keys.json"), "w") as f:
        json.dump(res, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"done in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
