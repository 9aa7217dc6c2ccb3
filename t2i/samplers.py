"""Sampler names users know from AUTOMATIC1111, mapped to diffusers schedulers.

A fresh scheduler is built for every request from the model's own scheduler config: diffusers
schedulers keep per-run state and are not safe to share between concurrent requests.
"""

from __future__ import annotations

from diffusers import (
    DDIMScheduler, DPMSolverMultistepScheduler, DPMSolverSDEScheduler, EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler, LCMScheduler, UniPCMultistepScheduler,
)

SAMPLERS = {
    "Euler": (EulerDiscreteScheduler, {}),
    "Euler a": (EulerAncestralDiscreteScheduler, {}),
    "DPM++ 2M": (DPMSolverMultistepScheduler, {}),
    "DPM++ 2M Karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    "DPM++ SDE Karras": (DPMSolverSDEScheduler, {"use_karras_sigmas": True}),
    "DDIM": (DDIMScheduler, {}),
    "UniPC": (UniPCMultistepScheduler, {}),
    "LCM": (LCMScheduler, {}),
}


# Latent-diffusion values for options some schedulers default otherwise, used when the model's config does not
# name them: DDIMScheduler defaults to clip_sample=True, which clips predicted *latents* to [-1, 1] and ruins
# images of models whose config comes from a scheduler without that option (the embedded model's Euler config).
LATENT_DEFAULTS = {"clip_sample": False, "set_alpha_to_one": False}


def make_scheduler(name: str, base_config: dict):
    """A new scheduler for sampler `name`, keeping the model's noise schedule from `base_config`."""
    cls, overrides = SAMPLERS[name]
    config = {**LATENT_DEFAULTS, **base_config}
    return cls.from_config(config, **overrides)
