"""Tiny random CLIPSeg models in the hub's layout, and what transformers computes with them, for
tests/prep/clipseg_test.cc; and the key and shape list of the full-size CIDAS/clipseg-rd64-refined.

Two configs: "a" (the simple transposed convolution, patch 16, FiLM on the first layer) and "b"
(the refined model's complex transposed convolution, patch 8, other extracted layers, FiLM on the
second). Each folder has config.json, model.safetensors, preprocessor_config.json (ViTImageProcessor,
as CIDAS's: bilinear resize, ImageNet mean and std) and the CLIP tokenizer files. For the two sample
photos and portrait, landscape and square crops (reference_photos.py), with the prompt "a round
object": the processor's pixel values, the token ids of
[prompt, ""], the logits, and the reference trainer's mask (softmax over the two with the
temperature, +0.01, * 255 / max, PIL F -> L, PIL's default (bicubic) resize to the photo).

usage: make_clipseg_models.py OUT_DIR TOKENIZER_DIR SAMPLES_DIR
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPTokenizer, ViTImageProcessor

from full_size_keys import write_full_size
from reference_photos import reference_photos

TINY = {
    "a": dict(text=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4),
              vision=dict(hidden_size=48, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                          image_size=64, patch_size=16),
              top=dict(projection_dim=24, reduce_dim=16, extract_layers=[1, 2, 3], decoder_num_attention_heads=2,
                       decoder_intermediate_size=32, conditional_layer=0, use_complex_transposed_convolution=False),
              size=96, seed=1),
    "b": dict(text=dict(hidden_size=40, intermediate_size=64, num_hidden_layers=3, num_attention_heads=5,
                        hidden_act="gelu"),
              vision=dict(hidden_size=32, intermediate_size=56, num_hidden_layers=5, num_attention_heads=4,
                          image_size=32, patch_size=8),
              top=dict(projection_dim=16, reduce_dim=24, extract_layers=[0, 2, 4], decoder_num_attention_heads=3,
                       decoder_intermediate_size=40, conditional_layer=1, use_complex_transposed_convolution=True),
              size=48, seed=2),
}
# The hub's CIDAS/clipseg-rd64-refined (ViT-B/16 and CLIP's text tower, 352 px).
FULL = dict(text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
            vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                        image_size=224, patch_size=16),
            top=dict(projection_dim=512, reduce_dim=64, extract_layers=[3, 6, 9], decoder_num_attention_heads=4,
                     decoder_intermediate_size=2048, conditional_layer=0, use_complex_transposed_convolution=True))
PROMPT = "a round object"
TEMPERATURE = 1.0
IMAGENET = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])


def config(spec):
    return CLIPSegConfig(text_config=spec["text"], vision_config=spec["vision"], **spec["top"])


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * r)
            elif name.endswith("bias"):
                p.copy_(0.05 * r)
            elif "embedding" in name:
                p.copy_(0.1 * r)
            elif p.dim() >= 2:
                fan_in = p[0].numel() if "transposed" not in name else p.shape[0] * p[0, 0].numel()
                p.copy_(r * min(0.3, fan_in ** -0.5))
            else:
                p.copy_(0.1 * r)
        # Logits of a few units, so that the two prompts' masks differ visibly.
        for name, p in model.named_parameters():
            if "transposed_convolution" in name or "film" in name:
                p.mul_(4.0)


def reference_mask(logits, size):
    p = torch.softmax(logits / TEMPERATURE, dim=0)[0]
    p = (p + 0.01).clamp_(0, 1)
    p = 255 * p / p.max()
    return np.array(Image.fromarray(p.numpy()).convert("L").resize(size))


def main():
    out, tokenizer_dir, samples = sys.argv[1:4]
    os.makedirs(out, exist_ok=True)
    photos = reference_photos(samples, os.path.join(out, "photos"))
    for name, spec in TINY.items():
        d = os.path.join(out, name)
        torch.manual_seed(spec["seed"])
        model = CLIPSegForImageSegmentation(config(spec)).eval()
        randomize(model, spec["seed"])
        model.save_pretrained(d, safe_serialization=True)
        tok = CLIPTokenizer.from_pretrained(tokenizer_dir)
        tok.save_pretrained(d)
        for f in ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"):  # as the hub has them
            shutil.copy(os.path.join(tokenizer_dir, f), d)
        proc = ViTImageProcessor(size={"height": spec["size"], "width": spec["size"]}, resample=2, **IMAGENET)
        proc.save_pretrained(d)
        dump = {}
        for i, path in enumerate(photos):
            image = Image.open(path).convert("RGB")
            pixels = proc(images=[image] * 2, return_tensors="pt")["pixel_values"]
            ids = tok([PROMPT, ""], padding="max_length", return_tensors="pt")["input_ids"]
            with torch.no_grad():
                logits = model(input_ids=ids, pixel_values=pixels).logits
            dump[f"{i}.pixel_values"] = pixels[0].contiguous()
            dump[f"{i}.input_ids"] = ids.contiguous()
            dump[f"{i}.logits"] = logits.contiguous()
            dump[f"{i}.mask"] = torch.from_numpy(reference_mask(logits, image.size).copy())
        save_file(dump, os.path.join(d, "reference.safetensors"))
        with open(os.path.join(d, "photos.json"), "w") as f:
            json.dump(photos, f)
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, logits {tuple(logits.shape)}")
    # Full size on the meta device: keys and shapes, and the config they came from.
    write_full_size(CLIPSegForImageSegmentation, config(FULL), out)

if __name__ == "__main__":
    main()
