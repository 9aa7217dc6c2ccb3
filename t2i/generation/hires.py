"""Hires fix: a txt2img image made again at a larger size by a second, img2img pass over its upscaled self.

As in A1111: the first pass runs at the request's size; its latents (`Latent`, `Latent (nearest)`) or its decoded
images (`Lanczos`, a model upscaler) are upscaled to the hires size (`hires_scale`, or `hires_width`/`hires_height`);
the second pass denoises them with `hires_denoise` strength for `hires_steps` (0: the request's steps; diffusers
then runs steps x strength of them, as A1111 does by default), with the hires prompts and sampler where given.
Each image's second pass starts from its own seed again, so the same request and seed give the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from t2i.generation.samplers import make_scheduler, seed_noise
from t2i.models.upscalers import LATENT_MODES, UpscalerLibrary
from t2i.request import GenerationRequest, RequestError
from t2i.settings import Settings

HIRES_FAMILIES = ("sd", "sdxl")


@dataclass
class HiresPlan:
    """What a request's second pass needs, settled before its first pass."""

    width: int
    height: int
    embeds: dict  # the second pass's prompt embeddings (the first pass's unless hires prompts are given)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def target_size(request: GenerationRequest, width: int, height: int, settings: Settings) -> tuple[int, int]:
    """The hires size for a base size, in multiples of 8 (a given side kept, the other from the aspect ratio),
    or RequestError when it is beyond the request limits."""
    if request.hires_width and request.hires_height:
        size = request.hires_width, request.hires_height
    elif request.hires_width:
        size = request.hires_width, round(height * request.hires_width / width / 8) * 8
    elif request.hires_height:
        size = round(width * request.hires_height / height / 8) * 8, request.hires_height
    else:
        size = int(width * request.hires_scale) // 8 * 8, int(height * request.hires_scale) // 8 * 8
    if max(size) > settings.max_side or size[0] * size[1] > settings.max_pixels or min(size) < 64:
        raise RequestError(f"hires fix would make {size[0]}x{size[1]} from {width}x{height}; the limits are 64 to "
                           f"{settings.max_side} a side and {settings.max_pixels} pixels (T2I_MAX_SIDE, T2I_MAX_PIXELS)")
    if size[0] < width or size[1] < height:
        raise RequestError(f"hires fix makes the image larger: {size[0]}x{size[1]} is smaller than {width}x{height}")
    return size


def check(model, request: GenerationRequest, upscalers: UpscalerLibrary) -> None:
    """RequestError when the model's family, the upscaler or the second pass's step count cannot work."""
    if model.family not in HIRES_FAMILIES:
        raise RequestError(f"hires fix runs on SD 1.x/2.x and SDXL models; {model.name} is a {model.family} model")
    upscalers.check(request.hires_upscaler)
    steps = request.hires_steps or request.steps
    if int(steps * request.hires_denoise) < 1:
        raise RequestError(f"hires fix: {steps} steps at denoising strength {request.hires_denoise} run no step; "
                           "raise hires steps or the strength")


def first_output_type(request: GenerationRequest) -> str:
    """What the first pass should return: latents for a latent upscaler, else images."""
    return "latent" if request.hires_enabled and request.hires_upscaler in LATENT_MODES else "pil"


def upscale(first, request: GenerationRequest, size: tuple[int, int], pipe, upscalers: UpscalerLibrary):
    """The first pass's output at the hires size: latents interpolated, or images by Lanczos or a model."""
    if request.hires_upscaler in LATENT_MODES:
        scale = pipe.vae_scale_factor
        return F.interpolate(first, size=(size[1] // scale, size[0] // scale),
                             mode=LATENT_MODES[request.hires_upscaler])
    return [upscalers.upscale(image, request.hires_upscaler, size, pipe.device) for image in first]


def second_pass(model, request: GenerationRequest, first, plan: HiresPlan, rows: dict, seeds: list[int],
                callback, upscalers: UpscalerLibrary) -> list[Image.Image]:
    """The hires images from the first pass's output (`rows`: the pipeline's prompt arguments, one row per image)."""
    pipe = model.pipeline_for("img2img")
    pipe.scheduler = make_scheduler(request.hires_sampler or request.sampler, model.scheduler_config, model.family_spec)
    seed_noise(pipe.scheduler, seeds)
    pipe.set_progress_bar_config(disable=True)
    image = upscale(first, request, plan.size, pipe, upscalers)
    return pipe(**rows, image=image, strength=request.hires_denoise,
                num_inference_steps=request.hires_steps or request.steps, guidance_scale=request.cfg,
                generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
                callback_on_step_end=callback, output_type="pil").images
