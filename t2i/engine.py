"""The engine: one entry point that runs txt2img, img2img and inpainting on any loaded model."""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from typing import Callable

import torch
from PIL import Image

from .models import ModelCache
from .previews import latents_to_preview
from .prompts import encode_prompts
from .request import MAX_SEED, GeneratedImage, GenerationRequest, GenerationResult, RequestError
from .samplers import make_scheduler
from .settings import Settings
from .styles import BUILTIN_STYLES_DIR, UnknownStyleError, apply_styles, load_styles

VERSION = "0.1.0"
log = logging.getLogger(__name__)


class GenerationCancelled(Exception):
    """The caller asked to stop; nothing is returned for the unfinished batch."""


@dataclass
class ProgressEvent:
    """Sent during sampling: which step of which batch, and approximate previews of the images."""

    step: int
    total_steps: int
    batch: int
    total_batches: int
    previews: list[Image.Image] | None = None


ProgressCallback = Callable[[ProgressEvent], None]


class Engine:
    """Loads models once and turns GenerationRequests into images with their recipes."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.models = ModelCache(self.settings)
        self.styles = load_styles([BUILTIN_STYLES_DIR, *self.settings.styles_dirs])
        for problem in self.styles.problems:  # a broken style file is skipped, not fatal
            log.warning("style skipped: %s", problem)

    def generate(self, request: GenerationRequest, on_progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        """Validate and run a request; each returned image carries the exact parameters that made it."""
        request.validate(self.settings)
        model = self.models.get(request.model)
        try:
            styled = apply_styles(request.prompt, request.negative_prompt, list(request.styles), self.styles)
        except UnknownStyleError as exc:
            raise RequestError(str(exc)) from exc
        width = request.width or model.native_size
        height = request.height or model.native_size
        base_seed = request.seed if request.seed >= 0 else secrets.randbelow(MAX_SEED + 1)
        result = GenerationResult(model=model.name, mode=request.mode)
        with model.lock, torch.inference_mode():
            # 1. the pipeline for this mode, with a fresh scheduler (safe: the model lock is held)
            pipe = model.pipeline_for(request.mode)
            pipe.scheduler = make_scheduler(request.sampler, model.scheduler_config)
            pipe.set_progress_bar_config(disable=True)
            # 2. weighted prompt embeddings (A1111 or compel syntax)
            embeds = encode_prompts(model, styled.prompt, styled.negative_prompt)
            # 3. images for img2img / inpainting
            extra = self._mode_inputs(request, width, height)
            for batch in range(request.batch_count):
                seeds = [(base_seed + batch * request.batch_size + k) % (MAX_SEED + 1)
                         for k in range(request.batch_size)]
                callback = self._step_callback(model, request, batch, on_progress, cancel)
                # 4. denoise and decode; one generator per image so each image is reproducible by its seed
                images = pipe(
                    **embeds, **extra, num_inference_steps=request.steps, guidance_scale=request.cfg,
                    width=width, height=height, num_images_per_prompt=request.batch_size,
                    generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                    callback_on_step_end=callback, output_type="pil",
                ).images
                if request.mask is not None:  # keep unmasked pixels exactly (the VAE round trip shifts them)
                    images = [Image.composite(image, extra["image"], extra["mask_image"]) for image in images]
                for image, seed in zip(images, seeds):
                    params = self._parameters(request, model, styled, seed, width, height)
                    result.images.append(GeneratedImage(image=image, seed=seed, parameters=params))
        return result

    @staticmethod
    def _mode_inputs(request: GenerationRequest, width: int, height: int) -> dict:
        if request.init_image is None:
            return {}
        inputs = {"image": request.init_image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS),
                  "strength": request.strength}
        if request.mask is not None:
            inputs["mask_image"] = request.mask.convert("L").resize((width, height), Image.Resampling.NEAREST)
        return inputs

    def _step_callback(self, model, request, batch, on_progress, cancel):
        every = max(1, self.settings.preview_every)

        def callback(pipe, step, timestep, kwargs):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled("generation cancelled")
            if on_progress is not None:
                done = step + 1
                previews = None
                if done % every == 0 and done < pipe.num_timesteps:
                    previews = latents_to_preview(model, kwargs["latents"])
                on_progress(ProgressEvent(done, pipe.num_timesteps, batch + 1, request.batch_count, previews))
            return kwargs

        return callback

    @staticmethod
    def _parameters(request, model, styled, seed, width, height) -> dict:
        params = request.recipe()
        params.update(seed=seed, width=width, height=height, batch_size=1, batch_count=1, model=model.name,
                      model_hash=model.short_hash, mode=request.mode, final_prompt=styled.prompt,
                      final_negative_prompt=styled.negative_prompt, generator=f"t2i {VERSION}")
        if request.init_image is None:
            params.pop("strength")
        return params
