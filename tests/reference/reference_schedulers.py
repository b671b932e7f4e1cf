"""The reference's scheduler table (replicate/cog-sdxl predict.py's SCHEDULERS), shared by the
scheduler and generation parity scripts."""
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, HeunDiscreteScheduler, PNDMScheduler)


class KarrasDPM:  # predict.py's override: DPM-Solver++ with Karras sigmas
    @staticmethod
    def from_config(config):
        return DPMSolverMultistepScheduler.from_config(config, use_karras_sigmas=True)


SCHEDULERS = {
    "DDIM": DDIMScheduler, "DPMSolverMultistep": DPMSolverMultistepScheduler, "HeunDiscrete": HeunDiscreteScheduler,
    "KarrasDPM": KarrasDPM, "K_EULER_ANCESTRAL": EulerAncestralDiscreteScheduler, "K_EULER": EulerDiscreteScheduler,
    "PNDM": PNDMScheduler,
}
