"""`xltune generate` against diffusers' StableDiffusionXL{,Img2Img,Inpaint}Pipeline on a tiny
random model, fp32 on the CPU, the same seed on both sides (xltune draws as torch.Generator()
.manual_seed(seed) does, so both start from the same latents; Note [Generation as diffusers
draws it] in src/generate/sdxl_pipeline.h).

Cases: each of the seven schedulers (the reference's names) with a negative prompt, and without
one (zero negative conditioning: the model says force_zeros_for_empty_prompt), and with a given
empty one (encoded); for each scheduler again, a trained_model.tar
of random LoRA and token rows (the reference's layout, TOK -> <s0><s1>) loaded the reference's
way on diffusers' side (load_lora_adapter(prefix=None) + load_textual_inversion, lora scale 0.6
through cross_attention_kwargs); two outputs; img2img and inpainting. Compared: the final
latents (relative to their largest value) and the 8-bit images (largest difference in levels).
Also: the PNG "parameters" chunk as Pillow reads it, and the same command twice gives
identical files.

usage: generate_parity.py XLTUNE MODEL_DIR WORK_DIR
"""
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline
from PIL import Image
from reference_schedulers import SCHEDULERS
from safetensors.torch import load_file, save_file

# Measured worst on ATen's native (AVX-512), avx2 and default CPU kernels: latents 3.2e-6 of their
# largest value (avx2; 3.1e-6 native, 2.9e-6 default), images 1 level (rounding at .5); see the
# printed table. Tolerances a few times above.
LATENT_TOL = 2e-5
PIXEL_TOL = 2


MODEL_SCHEDULER_CONFIG = None


def run_xltune(xltune, model, out, args):
    cmd = [xltune, "generate", "--model", model, "--out", out, "--save_latents", "true", "--threads", "1"] + args
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)}\n{p.stderr}")
    latents = load_file(os.path.join(out, "latents.safetensors"))["latents"]
    n = latents.shape[0]
    images = np.stack([np.array(Image.open(os.path.join(out, f"out-{i}.png")).convert("RGB")) for i in range(n)])
    return latents, images


def make_trained_tar(model, work):
    """Random LoRA (reference layout, alpha folded: no alpha keys) and token rows, tarred."""
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet")
    g = torch.Generator().manual_seed(5)
    lora = {}
    for name, module in unet.named_modules():
        if not (name.endswith("attn1") or name.endswith("attn2")):
            continue
        for proj in ("to_q", "to_k", "to_v", "to_out"):
            linear = getattr(module, proj) if proj != "to_out" else module.to_out[0]
            down = torch.randn(4, linear.in_features, generator=g) * 0.2
            up = torch.randn(linear.out_features, 4, generator=g) * 0.2
            lora[f"{name}.processor.{proj}_lora.down.weight"] = down
            lora[f"{name}.processor.{proj}_lora.up.weight"] = up
    te1 = json.load(open(os.path.join(model, "text_encoder", "config.json")))["hidden_size"]
    te2 = json.load(open(os.path.join(model, "text_encoder_2", "config.json")))["hidden_size"]
    rows = {"text_encoders_0": torch.randn(2, te1, generator=g), "text_encoders_1": torch.randn(2, te2, generator=g)}
    d = os.path.join(work, "trained")
    os.makedirs(d, exist_ok=True)
    save_file(lora, os.path.join(d, "lora.safetensors"))
    save_file(rows, os.path.join(d, "embeddings.pti"))
    with open(os.path.join(d, "special_params.json"), "w") as f:
        json.dump({"TOK": "<s0><s1>"}, f)
    tar = os.path.join(work, "trained_model.tar")
    with tarfile.open(tar, "w") as t:
        for name in ("lora.safetensors", "embeddings.pti", "special_params.json"):
            t.add(os.path.join(d, name), arcname=name)
    return tar, lora, rows


def diffusers_run(pipe, scheduler, prompt, negative, seed, steps, guidance, size, n, extra=None, lora_scale=None):
    # From the model's own config each time. (predict.py chains pipe.scheduler.config from call to
    # call, so KarrasDPM's use_karras_sigmas leaks into the next request's scheduler: not copied.)
    pipe.scheduler = SCHEDULERS[scheduler].from_config(MODEL_SCHEDULER_CONFIG)
    final = {}

    def keep(p, i, t, kw):
        final["latents"] = kw["latents"].clone()
        return kw

    kwargs = dict(prompt=prompt, negative_prompt=negative, num_inference_steps=steps, guidance_scale=guidance,
                  generator=torch.Generator().manual_seed(seed), num_images_per_prompt=n, output_type="np",
                  callback_on_step_end=keep, callback_on_step_end_tensor_inputs=["latents"])
    if size is not None:
        kwargs["width"], kwargs["height"] = size
    if lora_scale is not None:
        kwargs["cross_attention_kwargs"] = {"scale": lora_scale}
    kwargs.update(extra or {})
    with torch.no_grad():
        images = pipe(**kwargs).images
    return final["latents"], (images * 255).round().astype(np.uint8)


def main():
    xltune, model, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    torch.set_num_threads(1)
    pipe = StableDiffusionXLPipeline.from_pretrained(model, torch_dtype=torch.float32, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    global MODEL_SCHEDULER_CONFIG
    MODEL_SCHEDULER_CONFIG = pipe.scheduler.config
    fail = 0
    rows = []

    def compare(label, ours, theirs):
        nonlocal fail
        (lo, io), (lt, it) = ours, theirs
        if lo.shape != lt.shape:
            print(f"FAIL: {label}: latents {tuple(lo.shape)} vs diffusers {tuple(lt.shape)}")
            fail = 1
            return
        rel = ((lo - lt).abs().max() / lt.abs().max()).item()
        px = int(np.abs(io.astype(np.int32) - it.astype(np.int32)).max())
        ok = rel < LATENT_TOL and px <= PIXEL_TOL
        rows.append((label, rel, px))
        print(f"{'ok  ' if ok else 'FAIL:'} {label}: latents {rel:.2e} of their largest value, image {px} levels")
        fail |= not ok

    size, steps = (64, 64), 8
    for i, name in enumerate(SCHEDULERS):
        seed = 100 + i
        common = ["--width", "64", "--height", "64", "--num_inference_steps", str(steps), "--scheduler", name,
                  "--seed", str(seed)]
        ours = run_xltune(xltune, model, os.path.join(work, f"neg-{name}"),
                          common + ["--prompt", "a red cube on a table", "--negative_prompt", "blurry"])
        theirs = diffusers_run(pipe, name, "a red cube on a table", "blurry", seed, steps, 7.5, size, 1)
        compare(f"{name}, negative prompt", ours, theirs)
        ours = run_xltune(xltune, model, os.path.join(work, f"zero-{name}"), common + ["--prompt", "a blue sphere"])
        theirs = diffusers_run(pipe, name, "a blue sphere", None, seed, steps, 7.5, size, 1)
        compare(f"{name}, no negative prompt (zeros)", ours, theirs)

    # A given empty negative prompt is encoded (only an absent one is zeros).
    ours = run_xltune(xltune, model, os.path.join(work, "empty-negative"),
                      ["--width", "64", "--height", "64", "--num_inference_steps", "6", "--seed", "8", "--prompt", "a tree",
                       "--negative_prompt", ""])
    compare("K_EULER, negative prompt \"\" (encoded)", ours,
            diffusers_run(pipe, "K_EULER", "a tree", "", 8, 6, 7.5, size, 1))
    zeros = run_xltune(xltune, model, os.path.join(work, "absent-negative"),
                       ["--width", "64", "--height", "64", "--num_inference_steps", "6", "--seed", "8", "--prompt", "a tree"])
    if (zeros[0] - ours[0]).abs().max() == 0:
        print("FAIL: an empty negative prompt gave the zero conditioning's image")
        fail = 1

    # Two outputs from one generator.
    ours = run_xltune(xltune, model, os.path.join(work, "two"), ["--width", "64", "--height", "64",
                      "--num_inference_steps", "6", "--scheduler", "K_EULER_ANCESTRAL", "--seed", "9", "--num_outputs",
                      "2", "--prompt", "two cats", "--guidance_scale", "5"])
    compare("K_EULER_ANCESTRAL, 2 outputs", ours, diffusers_run(pipe, "K_EULER_ANCESTRAL", "two cats", None, 9, 6, 5.0,
                                                                size, 2))

    # A trained tar: LoRA at 0.6 and the token rows, the trigger replaced.
    tar, lora, trows = make_trained_tar(model, work)
    pipe.unet.load_lora_adapter(lora, prefix=None, adapter_name="trained")
    pipe.load_textual_inversion(trows["text_encoders_0"], token=["<s0>", "<s1>"], text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(trows["text_encoders_1"], token=["<s0>", "<s1>"], text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    # xltune pools text_encoder_2 at the first end-of-text token, in training and generation alike
    # (Note [Pooling at the first end-of-text token] in docs/design-notes.md); transformers pools
    # SDXL's encoders (config eos_token_id 2) at argmax(ids), which is <s1> once it is in the
    # prompt. Told the real end-of-text id, transformers pools where xltune does.
    for te in (pipe.text_encoder, pipe.text_encoder_2.text_model):  # transformers 5: CLIPTextModel is the transformer
        te.eos_token_id = 49407
    for name in SCHEDULERS:
        ours = run_xltune(xltune, model, os.path.join(work, f"lora-{name}"),
                          ["--width", "64", "--height", "64", "--num_inference_steps", "6", "--scheduler", name,
                           "--seed", "3", "--prompt", "a photo of TOK", "--negative_prompt", "ugly", "--lora", tar])
        theirs = diffusers_run(pipe, name, "a photo of <s0><s1>", "ugly", 3, 6, 7.5, size, 1, lora_scale=0.6)
        compare(f"{name}, trained_model.tar (LoRA 0.6 + <s0><s1>)", ours, theirs)
        if name == "K_EULER":
            with_lora = ours
    # Without the LoRA the images differ (the LoRA did something).
    base = run_xltune(xltune, model, os.path.join(work, "nolora"),
                      ["--width", "64", "--height", "64", "--num_inference_steps", "6", "--seed", "3",
                       "--prompt", "a photo of <s0><s1>", "--negative_prompt", "ugly"])
    if np.abs(base[1].astype(int) - with_lora[1].astype(int)).max() == 0:
        print("FAIL: the LoRA changed nothing")
        fail = 1
    pipe.unet.delete_adapters("trained")

    # img2img and inpainting from one image (64x64, and a black and white mask).
    g = torch.Generator().manual_seed(11)
    img = (torch.rand(64, 64, 3, generator=g) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(img).save(os.path.join(work, "init.png"))
    mask = np.zeros((64, 64, 3), np.uint8)
    mask[16:48, 8:40] = 255
    Image.fromarray(mask).save(os.path.join(work, "mask.png"))
    init, mask_img = Image.open(os.path.join(work, "init.png")), Image.open(os.path.join(work, "mask.png"))
    i2i = StableDiffusionXLImg2ImgPipeline.from_pipe(pipe)
    inp = StableDiffusionXLInpaintPipeline.from_pipe(pipe)
    for p in (i2i, inp):
        p.set_progress_bar_config(disable=True)
    for name in ("K_EULER", "DDIM", "HeunDiscrete", "DPMSolverMultistep"):
        ours = run_xltune(xltune, model, os.path.join(work, f"i2i-{name}"),
                          ["--image", os.path.join(work, "init.png"), "--prompt_strength", "0.6", "--scheduler", name,
                           "--num_inference_steps", "10", "--seed", "21", "--prompt", "a painting"])
        theirs = diffusers_run(i2i, name, "a painting", None, 21, 10, 7.5, None, 1, extra={"image": init, "strength": 0.6})
        compare(f"{name}, img2img strength 0.6", ours, theirs)
        ours = run_xltune(xltune, model, os.path.join(work, f"inpaint-{name}"),
                          ["--image", os.path.join(work, "init.png"), "--mask", os.path.join(work, "mask.png"),
                           "--prompt_strength", "0.8", "--scheduler", name, "--num_inference_steps", "10", "--seed", "22",
                           "--prompt", "a hole", "--width", "64", "--height", "64"])
        theirs = diffusers_run(inp, name, "a hole", None, 22, 10, 7.5, size, 1,
                               extra={"image": init, "mask_image": mask_img, "strength": 0.8})
        compare(f"{name}, inpainting strength 0.8", ours, theirs)

    # Inputs of other sizes: resized with Pillow's Lanczos on both sides (inpainting to --width x
    # --height, img2img down to a multiple of 8).
    big = (torch.rand(99, 85, 3, generator=g) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(big).save(os.path.join(work, "odd.png"))
    odd_mask = np.zeros((99, 85, 3), np.uint8)
    odd_mask[20:70, 10:50] = (255, 200, 90)  # not grey: the "L" conversion matters
    Image.fromarray(odd_mask).save(os.path.join(work, "odd_mask.png"))
    odd, odd_m = Image.open(os.path.join(work, "odd.png")), Image.open(os.path.join(work, "odd_mask.png"))
    ours = run_xltune(xltune, model, os.path.join(work, "inpaint-odd"),
                      ["--image", os.path.join(work, "odd.png"), "--mask", os.path.join(work, "odd_mask.png"),
                       "--prompt_strength", "0.8", "--num_inference_steps", "8", "--seed", "23", "--prompt", "a hole",
                       "--width", "64", "--height", "64"])
    compare("K_EULER, inpainting an 85x99 image and mask at 64x64", ours,
            diffusers_run(inp, "K_EULER", "a hole", None, 23, 8, 7.5, size, 1,
                          extra={"image": odd, "mask_image": odd_m, "strength": 0.8}))
    ours = run_xltune(xltune, model, os.path.join(work, "i2i-odd"),
                      ["--image", os.path.join(work, "odd.png"), "--prompt_strength", "0.6", "--num_inference_steps", "8",
                       "--seed", "24", "--prompt", "a painting"])
    compare("K_EULER, img2img of an 85x99 image (80x96)", ours,
            diffusers_run(i2i, "K_EULER", "a painting", None, 24, 8, 7.5, None, 1, extra={"image": odd, "strength": 0.6}))

    # The recipe as Pillow (and so A1111's PNG Info) reads it.
    params = Image.open(os.path.join(work, "lora-K_EULER", "out-0.png")).info.get("parameters", "")
    lines = params.split("\n")
    want = ["a photo of TOK <lora:trained_model:0.6>", "Negative prompt: ugly"]
    if lines[:2] != want or not lines[2].startswith("Steps: 6, Sampler: Euler, CFG scale: 7.5, Seed: 3, Size: 64x64"):
        print(f"FAIL: parameters chunk {params!r}")
        fail = 1
    else:
        print(f"ok   the parameters chunk reads back: {lines[2]}")

    # The same command twice: the same bytes (ancestral sampling included).
    a = os.path.join(work, "twice-a")
    b = os.path.join(work, "twice-b")
    args = ["--width", "64", "--height", "64", "--num_inference_steps", "5", "--scheduler", "K_EULER_ANCESTRAL",
            "--seed", "77", "--num_outputs", "2", "--prompt", "same"]
    run_xltune(xltune, model, a, args)
    run_xltune(xltune, model, b, args)
    same = all(open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read()
               for f in ("out-0.png", "out-1.png", "grid.png"))
    print("ok   the same command twice: identical PNGs" if same else "FAIL: two runs of one command differ")
    fail |= not same
    worst = max(rows, key=lambda r: r[1])
    print(f"worst latents {worst[1]:.2e} ({worst[0]}); worst image {max(r[2] for r in rows)} levels over {len(rows)} cases")
    sys.exit(fail)


if __name__ == "__main__":
    main()
