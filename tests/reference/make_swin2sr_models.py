"""Tiny random Swin2SR models in the hub's layout, and what transformers computes with them, for
tests/prep/swin2sr_test.cc; and the key and shape list of the full-size
caidas/swin2SR-realworld-sr-x4-64-bsrgan-psnr.

Two configs that the upscaler runs end to end: "a" (the real-world model's architecture:
nearest+conv x4, "1conv", window 8) and "b" (pixelshuffle x2, "3conv", window 4, img_range 255,
other depths and heads). Three that only the model runs, on transformers' pixel tensors: "c"
(pixelshuffledirect x3, one channel, image_size 6 < window_size 8, so windows of 6 and no shift),
"d" (pixelshuffle x4) and "e" (pixelshuffle x3, no q/v bias, gelu_new). Each folder has
config.json, model.safetensors and preprocessor_config.json (Swin2SRImageProcessor: rescale 1/255,
symmetric pad to the next multiple of 8, which adds 1 to 8 pixels, 8 when the size is already a
multiple).

For four crops of the sample photos (40x36 and 28x44 of chelsea, 24x24 and 17x33 of coffee): the crop's RGB bytes, the
processor's pixel values, the reconstruction, and the reference trainer's 8-bit image (clamp to
0..1, * 255, round half to even, uint8) with the processor's pad cropped off (the reference keeps
it; xltune does not), so upscale x the crop. And the bytes of a 120x100 crop, which the C++ test
upscales tiled and untiled.

usage: make_swin2sr_models.py OUT_DIR SAMPLES_DIR
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import Swin2SRConfig, Swin2SRForImageSuperResolution, Swin2SRImageProcessorPil

from full_size_keys import write_full_size

TINY = {
    "a": dict(embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=8, image_size=64, mlp_ratio=2.0,
              upscale=4, img_range=1.0, resi_connection="1conv", upsampler="nearest+conv", seed=1),
    "b": dict(embed_dim=24, depths=[1, 3], num_heads=[3, 2], window_size=4, image_size=32, mlp_ratio=1.5,
              upscale=2, img_range=255.0, resi_connection="3conv", upsampler="pixelshuffle",
              layer_norm_eps=1e-6, seed=2),
    "c": dict(embed_dim=12, depths=[2], num_heads=[3], window_size=8, image_size=6, num_channels=1,
              upscale=3, img_range=1.0, resi_connection="1conv", upsampler="pixelshuffledirect", seed=3),
    "d": dict(embed_dim=12, depths=[2], num_heads=[2], window_size=8, image_size=16,
              upscale=4, img_range=1.0, resi_connection="1conv", upsampler="pixelshuffle", seed=4),
    "e": dict(embed_dim=8, depths=[2], num_heads=[2], window_size=4, image_size=16, mlp_ratio=3.0, qkv_bias=False,
              hidden_act="gelu_new", upscale=3, img_range=1.0, resi_connection="1conv", upsampler="pixelshuffle",
              seed=5),
}
END_TO_END = ("a", "b")
# The hub's caidas/swin2SR-realworld-sr-x4-64-bsrgan-psnr (the reference trainer's upscaler), as
# transformers' conversion script makes it: Swin2SRConfig's defaults with upscale 4 and nearest+conv.
FULL = dict(embed_dim=180, depths=[6, 6, 6, 6, 6, 6], num_heads=[6, 6, 6, 6, 6, 6], window_size=8, image_size=64,
            patch_size=1, num_channels=3, mlp_ratio=2.0, upscale=4, img_range=1.0, resi_connection="1conv",
            upsampler="nearest+conv")
# (photo, left, top, width, height)
# Landscape, square, portrait (the pad differs per side), and a portrait one-pad-step tall crop.
CROPS = [("chelsea.png", 120, 40, 40, 36), ("coffee.png", 200, 150, 24, 24), ("chelsea.png", 150, 60, 28, 44),
         ("coffee.png", 250, 100, 17, 33)]
# A larger crop for the C++ test's tiled-against-untiled check (its bytes only).
TILING = ("chelsea.png", 100, 30, 120, 100)


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * r)
            elif "logit_scale" in name:
                p.copy_(np.log(10) + 0.5 * r)  # some heads above the clamp at log(100)
            elif name.endswith("bias"):
                p.copy_(0.05 * r)
            elif p.dim() >= 2:
                p.copy_(r * min(0.3, p[0].numel() ** -0.5))
            else:
                p.copy_(0.1 * r)
        for name, p in model.named_parameters():
            if "logit_scale" in name:
                p.view(-1)[0] = 5.0  # above log(1 / 0.01): clamped


def reference_image(reconstruction, width, height, scale):
    # cog-sdxl preprocess.py swin_ir_sr (on a copy: its clamp_ is in place), then the pad cropped off.
    output = reconstruction.data.clone().squeeze(0).float().cpu().clamp_(0, 1).numpy()
    output = np.moveaxis(output, source=0, destination=-1)
    output = (output * 255.0).round().astype(np.uint8)
    return output[: height * scale, : width * scale]


def main():
    out, samples = sys.argv[1:3]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(2)
    crops = []
    for photo, left, top, w, h in CROPS + [TILING]:
        image = Image.open(os.path.join(samples, photo)).convert("RGB")
        crops.append(image.crop((left, top, left + w, top + h)))
    tiling = crops.pop()
    for name, spec in TINY.items():
        spec = dict(spec)
        seed = spec.pop("seed")
        d = os.path.join(out, name)
        torch.manual_seed(seed)
        model = Swin2SRForImageSuperResolution(Swin2SRConfig(**spec)).eval()
        randomize(model, seed)
        model.save_pretrained(d, safe_serialization=True)
        proc = Swin2SRImageProcessorPil()
        proc.save_pretrained(d)
        dump = {}
        for i, crop in enumerate(crops):
            pixels = proc(crop, return_tensors="pt")["pixel_values"]
            if spec.get("num_channels", 3) == 1:
                pixels = pixels[:, :1].contiguous()
            with torch.no_grad():
                reconstruction = model(pixel_values=pixels).reconstruction
            dump[f"{i}.rgb"] = torch.from_numpy(np.asarray(crop).copy())
            dump[f"{i}.pixel_values"] = pixels[0].contiguous()
            dump[f"{i}.reconstruction"] = reconstruction[0].contiguous()
            if name in END_TO_END:
                dump[f"{i}.image"] = torch.from_numpy(reference_image(reconstruction, *crop.size, spec["upscale"]).copy())
        dump["tiling.rgb"] = torch.from_numpy(np.asarray(tiling).copy())
        save_file(dump, os.path.join(d, "reference.safetensors"))
        with open(os.path.join(d, "crops.json"), "w") as f:
            json.dump([dict(photo=os.path.abspath(os.path.join(samples, c[0])), left=c[1], top=c[2], width=c[3],
                            height=c[4]) for c in CROPS + [TILING]], f)
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, "
              f"reconstruction {tuple(reconstruction.shape)}")
    # Full size on the meta device: keys and shapes, and the config they came from.
    write_full_size(Swin2SRForImageSuperResolution, Swin2SRConfig(**FULL), out)

if __name__ == "__main__":
    main()
