"""Seconds per image of `xltune generate` against diffusers' StableDiffusionXLPipeline on the CPU.

  .venv/bin/python bench/generate.py [--presets small] [--steps 20] [--size 256] [--workdir DIR]

The same model (xltune init-model --preset, cached in WORKDIR), prompt, size, scheduler (K_EULER),
guidance 7.5 (so a batch of 2 per UNet call), fp32, 2 threads on both sides, each side in its own
process. Timed: the pipeline alone (model loading excluded: xltune prints its generating time,
diffusers' call is timed around pipe()), best of 3 runs after a warm-up. Prints both and the
ratio diffusers/xltune (> 1: xltune is faster).
"""
import argparse
import os
import re
import subprocess
import sys

from bench_util import best_of  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def diffusers_side(model, size, steps, threads):
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    torch.set_num_threads(threads)
    pipe = StableDiffusionXLPipeline.from_pretrained(model, torch_dtype=torch.float32, add_watermarker=False)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)

    def once():
        with torch.no_grad():
            pipe(prompt="a photo of a cat", width=size, height=size, num_inference_steps=steps, guidance_scale=7.5,
                 generator=torch.Generator().manual_seed(1), output_type="np")

    print(f"SECONDS {best_of(3, once)}")


def xltune_side(xltune, model, size, steps, threads, out):
    cmd = [xltune, "generate", "--model", model, "--prompt", "a photo of a cat", "--width", str(size), "--height",
           str(size), "--num_inference_steps", str(steps), "--seed", "1", "--threads", str(threads), "--out", out]
    times = []
    for _ in range(4):  # the first is the warm-up
        p = subprocess.run(cmd, check=True, capture_output=True, text=True)
        times.append(float(re.search(r"\(([0-9.]+) s generating\)", p.stdout).group(1)))
    return min(times[1:])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", nargs="+", default=["small"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default=os.path.join(ROOT, "build", "bench-generate"))
    p.add_argument("--xltune", default=os.path.join(ROOT, "build", "bin", "xltune"))
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        diffusers_side(a.child[0], int(a.child[1]), int(a.child[2]), int(a.child[3]))
        return
    os.makedirs(a.workdir, exist_ok=True)
    for preset in a.presets:
        model = os.path.join(a.workdir, preset)
        if not os.path.exists(os.path.join(model, "model_index.json")):
            subprocess.run([a.xltune, "init-model", "--preset", preset, "--out", model], check=True, stdout=subprocess.DEVNULL)
        ours = xltune_side(a.xltune, model, a.size, a.steps, a.threads, os.path.join(a.workdir, "out-" + preset))
        child = subprocess.run([sys.executable, __file__, "--child", model, str(a.size), str(a.steps), str(a.threads)],
                               check=True, capture_output=True, text=True)
        theirs = float(re.search(r"SECONDS ([0-9.]+)", child.stdout).group(1))
        print(f"{preset} preset, {a.size}x{a.size}, {a.steps} steps K_EULER, guidance 7.5, 1 image, CPU fp32, "
              f"{a.threads} threads, best of 3:")
        print(f"  diffusers {theirs:7.2f} s/image   xltune {ours:7.2f} s/image   ratio {theirs / ours:.2f}x")


if __name__ == "__main__":
    main()
