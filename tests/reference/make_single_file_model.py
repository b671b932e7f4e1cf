#!/usr/bin/env python3
"""A diffusers SDXL folder as one SGM single-file checkpoint (the layout of sd_xl_base_1.0.safetensors).

  make_single_file_model.py MODEL_DIR OUT.safetensors

UNet under model.diffusion_model., VAE under first_stage_model., CLIP-L under
conditioner.embedders.0.transformer. and OpenCLIP-bigG under conditioner.embedders.1.model., with
the converters of make_sdxl_unets.py, make_sdxl_vaes.py and make_clip_text_encoders.py (each
checked against diffusers' own SGM converters there). For training the same model from a folder
and from a single file (tests/cli/train_test.sh).
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_sdxl_unets import unet_to_sgm  # noqa: E402
from make_sdxl_vaes import vae_to_sgm  # noqa: E402
from make_clip_text_encoders import openclip_keys  # noqa: E402


def main():
    model, out = sys.argv[1], sys.argv[2]
    unet_cfg = json.load(open(os.path.join(model, "unet", "config.json")))
    vae_cfg = json.load(open(os.path.join(model, "vae", "config.json")))
    te2_cfg = json.load(open(os.path.join(model, "text_encoder_2", "config.json")))
    sf = {}
    sf.update(unet_to_sgm(load_file(os.path.join(model, "unet", "diffusion_pytorch_model.safetensors")), unet_cfg))
    sf.update(vae_to_sgm(load_file(os.path.join(model, "vae", "diffusion_pytorch_model.safetensors")),
                         len(vae_cfg["block_out_channels"])))
    te1 = load_file(os.path.join(model, "text_encoder", "model.safetensors"))
    sf.update({"conditioner.embedders.0.transformer." + (k if k.startswith("text_model.") else "text_model." + k): v
               for k, v in te1.items()})
    te2 = load_file(os.path.join(model, "text_encoder_2", "model.safetensors"))
    te2 = {(k if k.startswith("text_model.") or k == "text_projection.weight" else "text_model." + k): v
           for k, v in te2.items()}
    sf.update(openclip_keys(te2, te2_cfg["num_hidden_layers"], "conditioner.embedders.1.model."))
    save_file({k: v.contiguous() for k, v in sf.items()}, out)
    print(f"wrote {out}: {len(sf)} tensors")


if __name__ == "__main__":
    main()
