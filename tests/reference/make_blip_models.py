"""Tiny random BLIP captioning models in the hub's layout, and what transformers computes with
them, for tests/prep/blip_test.cc; and the key and shape list of the full-size
Salesforce/blip-image-captioning-large.

Two configs ("a", "b": other widths, depths, heads, patch and image sizes). Each folder has
config.json, model.safetensors, preprocessor_config.json (BlipImageProcessor: bicubic resize,
OpenAI CLIP mean and std, as the hub's) and a BERT WordPiece tokenizer (vocab.txt, with [DEC] as
the bos token, as BLIP's). For two sample photos: the processor's pixel values, the vision
tower's image embeddings, the greedy and beam (3 beams) token ids and their decoded captions as
`processor.decode(ids, skip_special_tokens=True)` gives them, and the decoder's teacher-forced
logits over the greedy ids.

usage: make_blip_models.py OUT_DIR SAMPLES_DIR
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor

from full_size_keys import write_full_size
from reference_photos import reference_photos

# A vocabulary with whole words, WordPiece continuations and the punctuation and contractions
# that decoding's clean-up joins (" ." -> ".", " ' " -> "'", " n't" -> "n't", ...).
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "'", "!", "?", "-", "s", "t", "m", "re", "ve",
         "n't", "a", "an", "the", "of", "on", "in", "with", "and", "is", "do", "not", "don", "cat", "dog", "cup",
         "coffee", "table", "red", "white", "sitting", "lying", "photo", "picture", "close", "up", "wooden", "mug",
         "##s", "##ing", "##ed", "##er", "##y", "##ly", "sofa", "there", "two", "black", "brown"]
TINY = {
    "a": dict(vision=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                          image_size=32, patch_size=8),
              text=dict(hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                        max_position_embeddings=64),
              seed=1),
    "b": dict(vision=dict(hidden_size=24, intermediate_size=40, num_hidden_layers=3, num_attention_heads=3,
                          image_size=48, patch_size=16, layer_norm_eps=1e-6),
              text=dict(hidden_size=40, intermediate_size=56, num_hidden_layers=3, num_attention_heads=5,
                        max_position_embeddings=48),
              seed=2),
}
# The hub's Salesforce/blip-image-captioning-large (ViT-L/16 at 384 px, BERT-base decoder).
FULL = dict(vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                        image_size=384, patch_size=16, layer_norm_eps=1e-5),
            text=dict(vocab_size=30524, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                      num_attention_heads=12, max_position_embeddings=512, bos_token_id=30522, sep_token_id=102,
                      pad_token_id=0, eos_token_id=2))
MAX_LENGTH = 20
NUM_BEAMS = 3
OPENAI_CLIP = dict(image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])


def config(spec, vocab_size):
    text = dict(spec["text"], vocab_size=vocab_size, bos_token_id=vocab_size - 2, sep_token_id=3, pad_token_id=0,
                eos_token_id=2)
    return BlipConfig(text_config=text, vision_config=spec["vision"])


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if "norm" in name.lower():
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * r)
            elif name.endswith("bias"):
                p.copy_(0.05 * r)
            elif "embedding" in name:
                p.copy_(0.5 * r)
            elif p.dim() >= 2:
                p.copy_(r * min(0.5, p[0].numel() ** -0.5))
            else:
                p.copy_(0.1 * r)
        # Logits a few units apart (no near-ties for greedy and beam search), and [SEP] likely
        # enough that some beams end before MAX_LENGTH.
        model.text_decoder.cls.predictions.bias.mul_(20.0)
        model.text_decoder.cls.predictions.bias[3] += 1.5


def main():
    out, samples = sys.argv[1:3]
    os.makedirs(out, exist_ok=True)
    # The two samples (landscape), then portrait and square crops.
    photos = reference_photos(samples, os.path.join(out, "photos"), sizes=[(72, 100), (64, 100), (97, 97), (48, 48)])
    for name, spec in TINY.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "vocab.txt"), "w") as f:
            f.write("\n".join(WORDS) + "\n")
        tok = BertTokenizer(os.path.join(d, "vocab.txt"))
        tok.add_special_tokens({"bos_token": "[DEC]"})
        tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
        tok.save_pretrained(d)
        vocab_size = len(tok)
        torch.manual_seed(spec["seed"])
        model = BlipForConditionalGeneration(config(spec, vocab_size)).eval()
        randomize(model, spec["seed"])
        model.save_pretrained(d, safe_serialization=True)
        size = spec["vision"]["image_size"]
        proc = BlipImageProcessor(size={"height": size, "width": size}, resample=3, **OPENAI_CLIP)
        proc.save_pretrained(d)
        dump, texts = {}, {}
        for i, path in enumerate(photos):
            image = Image.open(path).convert("RGB")
            pixels = proc(images=image, return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                embeds = model.vision_model(pixel_values=pixels).last_hidden_state
                greedy = model.generate(pixel_values=pixels, max_length=MAX_LENGTH, do_sample=False, num_beams=1)
                beam = model.generate(pixel_values=pixels, max_length=MAX_LENGTH, do_sample=False,
                                      num_beams=NUM_BEAMS)
                logits = model(pixel_values=pixels, input_ids=greedy).logits
            dump[f"{i}.pixel_values"] = pixels[0].contiguous()
            dump[f"{i}.image_embeds"] = embeds[0].contiguous()
            dump[f"{i}.greedy"] = greedy[0].contiguous()
            dump[f"{i}.beam"] = beam[0].contiguous()
            dump[f"{i}.logits"] = logits[0].contiguous()
            texts[f"{i}.greedy"] = tok.decode(greedy[0], skip_special_tokens=True)
            texts[f"{i}.beam"] = tok.decode(beam[0], skip_special_tokens=True)
            print(f"{name} photo {i}: greedy {greedy[0].tolist()} '{texts[f'{i}.greedy']}'; "
                  f"beam {beam[0].tolist()} '{texts[f'{i}.beam']}'")
        save_file(dump, os.path.join(d, "reference.safetensors"))
        with open(os.path.join(d, "reference.json"), "w") as f:
            json.dump(dict(photos=photos, texts=texts, max_length=MAX_LENGTH, num_beams=NUM_BEAMS), f, indent=1)
    # Full size on the meta device: keys and shapes, and the config they came from.
    write_full_size(BlipForConditionalGeneration, BlipConfig(text_config=FULL["text"], vision_config=FULL["vision"]), out)

if __name__ == "__main__":
    main()
