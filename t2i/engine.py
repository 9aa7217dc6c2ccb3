"""The engine: one entry point that runs txt2img, img2img and inpainting on any loaded model."""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from typing import Callable

import torch
from PIL import Image

from .fastpath import feature_cache
from .models import ModelCache
from .plugins import PluginManager, activated
from .previews import latents_to_preview, preview_method
from .prompts import encode_prompts
from .request import MAX_SEED, GeneratedImage, GenerationRequest, GenerationResult, RequestError
from .safety import SafetyGate
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
    previews: list[Image.Image | None] | None = None  # None for a preview the safety gate held back


ProgressCallback = Callable[[ProgressEvent], None]


class Engine:
    """Loads models once and turns GenerationRequests into images with their recipes."""

    def __init__(self, settings: Settings | None = None, plugins: PluginManager | None = None):
        self.settings = settings or Settings()
        self.models = ModelCache(self.settings)
        self.plugins = plugins if plugins is not None else PluginManager.discover(self.settings)
        self.safety = SafetyGate(self.plugins, self.settings)
        self.styles = load_styles([BUILTIN_STYLES_DIR, *self.settings.styles_dirs])
        for problem in self.styles.problems:  # a broken style file is skipped, not fatal
            log.warning("style skipped: %s", problem)

    def generate(self, request: GenerationRequest, on_progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        """Validate and run a request; each returned image carries the exact parameters that made it."""
        request.validate(self.settings)
        units = self.plugins.units_for_request(request.plugin_units)
        prompt = request.prompt
        for adapter in self.plugins.of_kind("adapter"):  # e.g. <lora:name:0.8> written in the prompt
            prompt, found = adapter.units_from_prompt(prompt)
            if found:
                units[adapter.name] = units.get(adapter.name, []) + found
        try:
            styled = apply_styles(prompt, request.negative_prompt, list(request.styles), self.styles)
        except UnknownStyleError as exc:
            raise RequestError(str(exc)) from exc
        audit_id = secrets.token_hex(6)  # ties this request's safety verdicts together in the audit log
        self.safety.check_prompts(styled.prompt, styled.negative_prompt, request_id=audit_id)
        model = self.models.get(request.model)
        width = request.width or model.native_size
        height = request.height or model.native_size
        base_seed = request.seed if request.seed >= 0 else secrets.randbelow(MAX_SEED + 1)
        result = GenerationResult(model=model.name, mode=request.mode)
        used = [(self.plugins.plugins[name], plugin_units) for name, plugin_units in units.items() if plugin_units]
        adapters = [(p, u) for p, u in used if p.kind == "adapter"]
        with model.lock, torch.inference_mode(), activated(model, adapters):
            # 1. the pipeline for this mode (a conditioner may swap in its own), with a fresh scheduler
            pipe = model.pipeline_for(request.mode)
            extra = self._mode_inputs(request, width, height)
            for plugin, plugin_units in used:
                if plugin.kind == "conditioner":
                    pipe, kwargs = plugin.prepare(model, pipe, request.mode, plugin_units, width, height)
                    extra.update(kwargs)
            pipe.scheduler = make_scheduler(request.sampler, model.scheduler_config)
            pipe.set_progress_bar_config(disable=True)
            # 2. weighted prompt embeddings (A1111 or compel syntax), after adapters touched the text encoder
            embeds = encode_prompts(model, styled.prompt, styled.negative_prompt)
            described = {k: v for plugin, plugin_units in used for k, v in plugin.describe(plugin_units).items()}
            for batch in range(request.batch_count):
                seeds = [(base_seed + batch * request.batch_size + k) % (MAX_SEED + 1)
                         for k in range(request.batch_size)]
                callback = self._step_callback(model, request, batch, on_progress, cancel, audit_id)
                # 3. denoise and decode; one generator per image so each image is reproducible by its seed
                with feature_cache(pipe.unet, model.cache["fast_path"].cache_interval):
                    images = pipe(
                        **embeds, **extra, num_inference_steps=request.steps, guidance_scale=request.cfg,
                        width=width, height=height, num_images_per_prompt=request.batch_size,
                        generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                        callback_on_step_end=callback, output_type="pil",
                    ).images
                if request.mask is not None:  # keep unmasked pixels exactly (the VAE round trip shifts them)
                    images = [Image.composite(image, extra["image"], extra["mask_image"]) for image in images]
                # 4. every image through the safety gate, one by one
                for image, seed in zip(images, seeds):
                    params = self._parameters(request, model, styled, seed, width, height, described)
                    screened = self.safety.screen_image(image, "image", request_id=audit_id)
                    result.images.append(GeneratedImage(image=screened.image, seed=seed, parameters=params,
                                                        notice=screened.notice))
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

    def _step_callback(self, model, request, batch, on_progress, cancel, audit_id):
        every = max(1, self.settings.preview_every)
        method = preview_method(model, self.settings.preview_method)

        def callback(pipe, step, timestep, kwargs):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled("generation cancelled")
            if on_progress is not None:
                done = step + 1
                previews = None
                if done % every == 0 and done < pipe.num_timesteps:
                    # a preview that would be flagged is not shown: None in its place
                    previews = [None if self.safety.screen_image(p, "preview", request_id=audit_id).flagged else p
                                for p in latents_to_preview(model, kwargs["latents"], method)]
                on_progress(ProgressEvent(done, pipe.num_timesteps, batch + 1, request.batch_count, previews))
            return kwargs

        return callback

    @staticmethod
    def _parameters(request, model, styled, seed, width, height, described) -> dict:
        params = request.recipe()
        if described:  # e.g. LoRA hashes; units written in the prompt stay in the recorded prompt
            params["infotext_extra"] = described
        params.update(seed=seed, width=width, height=height, batch_size=1, batch_count=1, model=model.name,
                      model_hash=model.short_hash, mode=request.mode, final_prompt=styled.prompt,
                      final_negative_prompt=styled.negative_prompt, generator=f"t2i {VERSION}")
        if request.init_image is None:
            params.pop("strength")
        return params
