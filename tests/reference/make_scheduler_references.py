"""Trajectories of diffusers' seven schedulers (the reference's predict.py names), for
tests/diffusion/scheduler_test.cc.

Each case runs one scheduler the way the SDXL pipelines drive it: latents = randn(generator) *
init_noise_sigma (txt2img) or add_noise(x0, noise, first timestep) after set_begin_index
(img2img's get_timesteps), then for each timestep scale_model_input, a stand-in model and step()
with the same CPU generator. The stand-in model is a fixed fp32 function of its input and the
timestep that xltune's test computes with the same ATen ops. Written per case: the timesteps,
init_noise_sigma, the initial latents, every step's latents.

usage: make_scheduler_references.py OUT_DIR
"""
import json
import os
import sys

import torch
from reference_schedulers import SCHEDULERS
from safetensors.torch import save_file

# SDXL base 1.0's scheduler/scheduler_config.json.
SDXL = {
    "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "clip_sample": False, "interpolation_type": "linear", "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False, "skip_prk_steps": True,
    "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": None, "use_karras_sigmas": False,
}
# Other spacings and v-prediction (as SD 2.x-style and zero-terminal-free fine-tunes ship).
TRAILING_V = dict(SDXL, timestep_spacing="trailing", prediction_type="v_prediction", steps_offset=0)
LINSPACE = dict(SDXL, timestep_spacing="linspace", steps_offset=0, beta_schedule="linear", beta_start=0.0001,
                beta_end=0.02)
CONFIGS = {"sdxl": SDXL, "trailing_v": TRAILING_V, "linspace": LINSPACE}


def model(x, t):
    # Mirrored in scheduler_test.cc: any fixed function of the input and timestep will do.
    return torch.tanh(x) * 0.7 + x * (t / 2000.0) - 0.05


def run(name, config, steps, strength, seed):
    s = SCHEDULERS[name].from_config(config)
    s.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    shape = (2, 4, 8, 8)
    if strength is None:
        begin = 0
        latents = torch.randn(shape, generator=g) * s.init_noise_sigma
    else:
        init = min(int(steps * strength), steps)
        begin = max(steps - init, 0) * s.order
        if hasattr(s, "set_begin_index"):
            s.set_begin_index(begin)
        x0 = torch.randn(shape, generator=g)
        noise = torch.randn(shape, generator=g)
        latents = s.add_noise(x0, noise, s.timesteps[begin:begin + 1].repeat(shape[0]))
    out = {"timesteps": s.timesteps.to(torch.float32), "init_noise_sigma": torch.tensor(float(s.init_noise_sigma)),
           "initial": latents.clone()}
    for k, t in enumerate(s.timesteps[begin:]):
        x_in = s.scale_model_input(latents, t)
        eps = model(x_in, t.to(torch.float32))
        kwargs = {"generator": g} if name in ("K_EULER_ANCESTRAL",) else {}
        latents = s.step(eps, t, latents, **kwargs).prev_sample
        out[f"step.{begin + k}"] = latents.clone()
    return out, begin


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    cases = []
    for config_name, config in CONFIGS.items():
        for name in SCHEDULERS:
            for steps in (10, 20):
                cases.append((config_name, name, steps, None))
            cases.append((config_name, name, 12, 0.6))
    listing = []
    for i, (config_name, name, steps, strength) in enumerate(cases):
        tensors, begin = run(name, CONFIGS[config_name], steps, strength, seed=1000 + i)
        file = f"case-{i:03d}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out_dir, file))
        listing.append({"file": file, "scheduler": name, "config": CONFIGS[config_name], "config_name": config_name,
                        "steps": steps, "strength": strength, "begin": begin, "seed": 1000 + i})
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(listing, f, indent=1)
    print(f"wrote {len(listing)} scheduler trajectories to {out_dir}")


if __name__ == "__main__":
    main()
