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


# samplers that work only on models distilled for them, by the scheduler class such a model ships with
DISTILLED_FOR = {"LCM": "LCMScheduler"}


def sampler_warning(name: str, model_scheduler_config: dict) -> str:
    """Why sampler `name` will not suit a model with this scheduler config ('' when it does)."""
    needed = DISTILLED_FOR.get(name)
    if needed is None or model_scheduler_config.get("_class_name") == needed:
        return ""
    return (f"the {name} sampler needs a model (or a LoRA) distilled for {name}; this model was not, so expect "
            "wrong colours and shapes")


def make_scheduler(name: str, base_config: dict):
    """A new scheduler for sampler `name`, keeping the model's noise schedule from `base_config`."""
    cls, overrides = SAMPLERS[name]
    config = {**LATENT_DEFAULTS, **base_config}
    return cls.from_config(config, **overrides)
