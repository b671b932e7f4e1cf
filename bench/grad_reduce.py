#!/usr/bin/env python3
"""bf16 against fp32 gradient reduction (Note [bf16 gradient reduction]) on 2 MPI ranks, same run.

  .venv/bin/python bench/grad_reduce.py [--steps 200] [--with-gather] [--workdir DIR]

Full fine-tuning of the tiny preset (made by `xltune init-model`, cached in WORKDIR) on the sample
photos at 64x64, batch 2 per rank, 2 ranks of one thread each under mpirun, ZeRO-1 (--zero auto),
lr 1e-4 constant, seed 5: once with --grad_reduce_dtype fp32, once with bf16 (and with
--with-gather, once more with --zero_gather_dtype bf16 as well). Every draw is keyed by the step and
the sample (Note [Keyed draws]), so the runs see the same samples, noise and timesteps, and differ
only by the reduction. Prints, against the fp32 run:
  - the loss curves: the largest difference of a step's loss (absolute and relative), and of the
    20-step running means;
  - the final weights (trainer_state.safetensors): ||a - b|| / ||a|| and ||a - b|| / ||a - w0|| (the
    share of the training's change that differs);
  - the per-step time: median over the steps after the first 10 (from metrics.jsonl's
    samples_per_s), and the ratio bf16 / fp32.
On MPI the bf16 sum goes through an fp32 copy (MPI has no bf16 type), so the time shows the cost of
the casts, not NCCL's halved bytes; the numerics are NCCL's for 2 ranks.
"""
import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def photos_zip(samples, out):
    from PIL import Image
    path = os.path.join(out, "photos.zip")
    if os.path.exists(path):
        return path
    with zipfile.ZipFile(path, "w") as z:
        for name in sorted(os.listdir(samples)):
            buf = io.BytesIO()
            Image.open(os.path.join(samples, name)).convert("RGB").resize((96, 72)).save(buf, "JPEG", quality=90)
            z.writestr(os.path.splitext(name)[0] + ".jpg", buf.getvalue())
    return path


def train(xltune, model, photos, out, steps, flags):
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               XLTUNE_LOG_LEVEL="warn")
    cmd = ["mpirun", "-np", "2", "--oversubscribe", xltune, "train", "--model", model, "--input_images", photos,
           "--resolution", "64", "--seed", "5", "--max_train_steps", str(steps), "--train_batch_size", "2",
           "--is_lora", "false", "--unet_learning_rate", "1e-4", "--save_dtype", "fp32",
           "--checkpointing_steps", str(steps + 1), "--resume", "none", "--output_dir", out] + flags
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    metrics = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    resolved = json.load(open(os.path.join(out, "run_config.json")))["resolved"]
    return metrics, resolved


def running_mean(xs, n=20):
    return [statistics.fmean(xs[max(0, i - n + 1):i + 1]) for i in range(len(xs))]


def step_seconds(metrics):
    # global batch 4 (2 ranks x 2) over samples per second; the first 10 steps warm up.
    return statistics.median(4 / m["samples_per_s"] for m in metrics[10:] if m["samples_per_s"] > 0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--with-gather", action="store_true", help="also a run with --zero_gather_dtype bf16")
    p.add_argument("--workdir", default=os.path.join(ROOT, "build", "bench-grad-reduce"))
    p.add_argument("--xltune", default=os.path.join(ROOT, "build", "bin", "xltune"))
    p.add_argument("--samples", default=os.path.join(ROOT, "data", "samples"))
    a = p.parse_args()
    from safetensors.torch import load_file
    os.makedirs(a.workdir, exist_ok=True)
    model = os.path.join(a.workdir, "tiny")
    if not os.path.exists(os.path.join(model, "model_index.json")):
        subprocess.run([a.xltune, "init-model", "--preset", "tiny", "--out", model], check=True, stdout=subprocess.DEVNULL)
    photos = photos_zip(a.samples, a.workdir)
    runs = {"fp32": ["--grad_reduce_dtype", "fp32"], "bf16": ["--grad_reduce_dtype", "bf16"]}
    if a.with_gather:
        runs["bf16+gather"] = ["--grad_reduce_dtype", "bf16", "--zero_gather_dtype", "bf16"]
    results = {}
    for name, flags in runs.items():
        out = os.path.join(a.workdir, "run-" + name.replace("+", "-"))
        metrics, resolved = train(a.xltune, model, photos, out, a.steps, flags)
        results[name] = (metrics, resolved, load_file(os.path.join(out, "trainer_state.safetensors")))
    w0 = load_file(os.path.join(model, "unet", "diffusion_pytorch_model.safetensors"))
    ref_metrics, _, ref_w = results["fp32"]
    ref_loss = [m["loss"] for m in ref_metrics]
    ref_time = step_seconds(ref_metrics)
    print(f"tiny preset, full fine-tuning (ZeRO-1), 64x64, batch 2 x 2 MPI ranks, {a.steps} steps, lr 1e-4")
    print(f"  fp32 reduction: {ref_time * 1e3:.1f} ms per step (median), final loss {ref_loss[-1]:.5f}")
    for name, (metrics, resolved, w) in results.items():
        if name == "fp32":
            continue
        loss = [m["loss"] for m in metrics]
        assert len(loss) == len(ref_loss), name
        diff = [abs(x - y) for x, y in zip(ref_loss, loss)]
        rel = max(d / max(abs(x), 1e-12) for d, x in zip(diff, ref_loss))
        smooth = max(abs(x - y) for x, y in zip(running_mean(ref_loss), running_mean(loss)))
        num = den = change = 0.0
        for k, t in ref_w.items():
            num += (t - w[k]).double().pow(2).sum().item()
            den += t.double().pow(2).sum().item()
            base = w0.get(k[len("unet."):]) if k.startswith("unet.") else None
            if base is not None:
                change += (t - base.float().view(t.shape)).double().pow(2).sum().item()
        seconds = step_seconds(metrics)
        print(f"  {name} (run_config: reduce {resolved['grad_reduce_dtype']}, gather {resolved['zero_gather_dtype']}): "
              f"{seconds * 1e3:.1f} ms per step, time ratio {seconds / ref_time:.3f} (bf16 / fp32)")
        print(f"    losses: max |difference| {max(diff):.3e} (relative {rel:.3e}), of the 20-step running means "
              f"{smooth:.3e}")
        print(f"    final weights: ||a - b|| / ||a|| = {(num / den) ** 0.5:.3e}, ||a - b|| / ||a - w0|| = "
              f"{(num / max(change, 1e-300)) ** 0.5:.3e}")


if __name__ == "__main__":
    sys.exit(main())
