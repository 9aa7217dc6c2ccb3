"""The engine: one entry point that runs txt2img, img2img and inpainting on any loaded model."""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass

import torch
from PIL import Image

from . import __version__ as VERSION
from .batching import Batcher
from .fastpath import feature_cache
from .models import LoadedModel, ModelCache
from .plugins import Plugin, PluginManager, activated
from .previews import latents_to_preview, preview_method
from .progress import GenerationCancelled, ProgressCallback, ProgressEvent
from .prompts import encode_prompts
from .request import MAX_SEED, GeneratedImage, GenerationRequest, GenerationResult, RequestError
from .safety import SafetyGate
from .samplers import make_scheduler
from .settings import Settings
from .styles import BUILTIN_STYLES_DIR, StyledPrompt, UnknownStyleError, apply_styles, load_styles

log = logging.getLogger(__name__)


@dataclass
class PreparedRequest:
    """A validated request with what is settled before its model is taken: units, styled prompts, size, seed."""

    request: GenerationRequest
    model: LoadedModel
    used: list[tuple[Plugin, list[dict]]]  # plugins with units, adapters found in the prompt included
    styled: StyledPrompt
    width: int
    height: int
    base_seed: int
    audit_id: str  # ties this request's safety verdicts together in the audit log

    @property
    def adapters(self) -> list[tuple[Plugin, list[dict]]]:
        return [(plugin, units) for plugin, units in self.used if plugin.kind == "adapter"]

    def seeds(self, batch: int) -> list[int]:
        """The seed of each image in batch number `batch` (from 0): consecutive from the base seed."""
        size = self.request.batch_size
        return [(self.base_seed + batch * size + k) % (MAX_SEED + 1) for k in range(size)]

    def described(self) -> dict:
        """What the used plugins add to the recipe (e.g. LoRA hashes)."""
        return {k: v for plugin, units in self.used for k, v in plugin.describe(units).items()}


class Engine:
    """Loads models once and turns GenerationRequests into images with their recipes."""

    def __init__(self, settings: Settings | None = None, plugins: PluginManager | None = None):
        self.settings = settings or Settings()
        self.models = ModelCache(self.settings)
        self.plugins = plugins if plugins is not None else PluginManager.discover(self.settings)
        self.safety = SafetyGate(self.plugins, self.settings)
        self.batcher = Batcher(self)
        self.styles = load_styles([BUILTIN_STYLES_DIR, *self.settings.styles_dirs])
        for problem in self.styles.problems:  # a broken style file is skipped, not fatal
            log.warning("style skipped: %s", problem)

    def generate(self, request: GenerationRequest, on_progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        """Validate and run a request; each returned image carries the exact parameters that made it.

        With batching on (T2I_BATCH_MAX > 1) a compatible request may share one pipeline call with others.
        """
        prepared = self.prepare(request)
        if self.batcher.accepts(prepared):
            return self.batcher.submit(prepared, on_progress, cancel)
        return self.run(prepared, on_progress, cancel)

    def prepare(self, request: GenerationRequest) -> PreparedRequest:
        """Validate, collect plugin units, apply styles and check the prompts: the work before the model lock."""
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
        audit_id = secrets.token_hex(6)
        self.safety.check_prompts(styled.prompt, styled.negative_prompt, request_id=audit_id)
        model = self.models.get(request.model)
        return PreparedRequest(
            request=request, model=model, styled=styled, audit_id=audit_id,
            used=[(self.plugins.plugins[name], plugin_units) for name, plugin_units in units.items() if plugin_units],
            width=request.width or model.native_size, height=request.height or model.native_size,
            base_seed=request.seed if request.seed >= 0 else secrets.randbelow(MAX_SEED + 1))

    def run(self, prepared: PreparedRequest, on_progress: ProgressCallback | None = None,
            cancel: threading.Event | None = None) -> GenerationResult:
        """Run a prepared request on its own, holding its model's lock."""
        request, model, styled, used = prepared.request, prepared.model, prepared.styled, prepared.used
        width, height, audit_id = prepared.width, prepared.height, prepared.audit_id
        result = GenerationResult(model=model.name, mode=request.mode)
        with model.lock, torch.inference_mode(), activated(model, prepared.adapters):
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
            described = prepared.described()
            for batch in range(request.batch_count):
                seeds = prepared.seeds(batch)
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
                result.images.extend(self.finish_images(prepared, images, seeds, described))
        return result

    def finish_images(self, prepared: PreparedRequest, images: list[Image.Image], seeds: list[int],
                      described: dict) -> list[GeneratedImage]:
        """Each image screened by the safety gate, with the recipe that remakes it."""
        finished = []
        for image, seed in zip(images, seeds):
            params = self._parameters(prepared.request, prepared.model, prepared.styled, seed, prepared.width,
                                      prepared.height, described)
            screened = self.safety.screen_image(image, "image", request_id=prepared.audit_id)
            finished.append(GeneratedImage(image=screened.image, seed=seed, parameters=params, notice=screened.notice))
        return finished

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
                    previews = self.screen_previews(latents_to_preview(model, kwargs["latents"], method), audit_id)
                on_progress(ProgressEvent(done, pipe.num_timesteps, batch + 1, request.batch_count, previews))
            return kwargs

        return callback

    def screen_previews(self, previews: list[Image.Image], audit_id: str) -> list[Image.Image | None]:
        """Live previews as shown: one that would be flagged is not shown, None in its place."""
        return [None if self.safety.screen_image(p, "preview", request_id=audit_id).flagged else p for p in previews]

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
