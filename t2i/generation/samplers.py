"""Sampler names users know from AUTOMATIC1111, mapped to diffusers schedulers of the model's family.

A fresh scheduler is built for every request from the model's own scheduler config: diffusers
schedulers keep per-run state and are not safe to share between concurrent requests. UNet families (SD, SDXL)
take the noise-prediction schedulers of SAMPLERS; flow-matching families (SD3, Flux, Z-Image, Qwen-Image, Chroma)
take the flow-matching schedulers of FLOW_SCHEDULERS, and a name a family lists in neither is refused
(t2i/models/families.py says which names each family takes), never replaced by another sampler.
"""

from __future__ import annotations

from diffusers import (
    DDIMScheduler, DPMSolverMultistepScheduler, DPMSolverSDEScheduler, EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler, LCMScheduler, UniPCMultistepScheduler,
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


# The same names on flow-matching models: these schedulers take the sigmas and the resolution-dependent shift (`mu`)
# that those pipelines pass to set_timesteps. UniPC predicts the flow itself, with the model's own fixed shift.
FLOW_SCHEDULERS = {
    "Euler": (FlowMatchEulerDiscreteScheduler, {}),
    "UniPC": (UniPCMultistepScheduler, {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}),
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


def seed_noise(scheduler, seeds: list[int]) -> None:
    """Give a scheduler with a noise source of its own one seed per image of the next call (`seeds`, in order)."""
    # DPM++ SDE's Brownian tree otherwise takes one seed for the whole batch from torch's global RNG, so an image
    # depended on the call it ran in; a list gives one tree per image (diffusers' BatchedBrownianTree)
    if hasattr(scheduler, "noise_sampler_seed"):
        scheduler.noise_sampler_seed = list(seeds)


def make_scheduler(name: str, base_config: dict, family):
    """A new scheduler for sampler `name` on a model of `family`, keeping the model's schedule from `base_config`;
    RequestError when the family cannot run that sampler."""
    family.check_sampler(name)
    if family.flow_matching:
        cls, overrides = FLOW_SCHEDULERS[name]
        if cls is UniPCMultistepScheduler:
            overrides = {**overrides, "flow_shift": base_config.get("shift", 1.0)}
        return cls.from_config(base_config, **overrides)
    cls, overrides = SAMPLERS[name]
    config = {**LATENT_DEFAULTS, **base_config}
    return cls.from_config(config, **overrides)
