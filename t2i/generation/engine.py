"""The engine: one entry point that runs txt2img, img2img and inpainting on any loaded model."""

from __future__ import annotations

import logging
import secrets
import threading

from t2i import __version__ as VERSION
from t2i.generation.batching import Batcher
from t2i.generation.outpaint import canvas_size
from t2i.generation.prepared import PreparedRequest
from t2i.generation.run import Member, Runner
from t2i.generation.wildcards import Wildcards, draws_per_image, generate_combinations, generate_per_image
from t2i.models.cache import LoadedModel, ModelCache
from t2i.plugins import PluginManager
from t2i.generation.progress import GenerationCancelled, ProgressCallback, ProgressEvent
from t2i.request import MAX_SEED, REQUEST_FIELDS, GenerationRequest, GenerationResult, RequestError
from t2i.safety.gate import SafetyGate
from t2i.settings import Settings
from t2i.style_files import load_styles
from t2i.styles import BUILTIN_STYLES_DIR, UnknownStyleError, apply_styles

# front ends import these from here
__all__ = ["VERSION", "Engine", "GenerationCancelled", "ProgressEvent"]
log = logging.getLogger(__name__)


class Engine:
    """Loads models once and turns GenerationRequests into images with their recipes."""

    def __init__(self, settings: Settings | None = None, plugins: PluginManager | None = None):
        self.settings = settings or Settings()
        self.models = ModelCache(self.settings)
        self.plugins = plugins if plugins is not None else PluginManager.discover(self.settings)
        self.safety = SafetyGate(self.plugins, self.settings)
        self.runner = Runner(self.settings, self.safety)
        self.batcher = Batcher(self.runner, self.settings)
        self.styles = load_styles([BUILTIN_STYLES_DIR, *self.settings.styles_dirs])
        self.wildcards = Wildcards(self.settings)
        for problem in self.styles.problems:  # a broken style file is skipped, not fatal
            log.warning("style skipped: %s", problem)

    def generate(self, request: GenerationRequest, on_progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        """Validate and run a request; each returned image carries the exact parameters that made it.

        With batching on (T2I_BATCH_MAX > 1) a compatible request may share one pipeline call with others.
        """
        if request.wildcards == "combinatorial":  # one request per expansion of the prompt
            return generate_combinations(self, request, on_progress, cancel)
        if draws_per_image(request):  # random wildcards in a batch: each image draws with its own seed
            return generate_per_image(self, request, on_progress, cancel)
        prepared = self.prepare(request)
        if self.batcher.accepts(prepared):
            return self.batcher.submit(prepared, on_progress, cancel)
        return self.run(prepared, on_progress, cancel)

    def prepare(self, request: GenerationRequest) -> PreparedRequest:
        """Validate, collect plugin units, apply styles and check the prompts: the work before the model lock."""
        request.validate(self.settings)
        base_seed = request.seed if request.seed >= 0 else secrets.randbelow(MAX_SEED + 1)
        expanded = self.wildcards.expand(request, base_seed)  # `{a|b}`, `__name__`: before the gate reads it
        request = expanded.request
        request.validate(self.settings)  # the expanded prompts are held to the same limits
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
        check_fits_family(request, model)
        native = canvas_size(request) or (model.native_size, model.native_size)  # outpainting: the new canvas's
        return PreparedRequest(
            request=request, model=model, styled=styled, audit_id=audit_id,
            used=[(self.plugins.plugins[name], plugin_units) for name, plugin_units in units.items() if plugin_units],
            width=request.width or native[0], height=request.height or native[1],
            base_seed=base_seed, templates=expanded.templates)

    def run(self, prepared: PreparedRequest, on_progress: ProgressCallback | None = None,
            cancel: threading.Event | None = None) -> GenerationResult:
        """Run a prepared request on its own (a group of one), holding its model's lock."""
        member = Member(prepared, on_progress, cancel or threading.Event())
        with prepared.model.lock:
            self.runner.run([member])
        return member.outcome()


def check_fits_family(request: GenerationRequest, model: LoadedModel) -> None:
    """Raise RequestError when the request asks for what the model's family cannot do (a sampler, a mode, distilled
    guidance), before the model lock is taken."""
    family = model.family_spec
    family.check_sampler(request.sampler)
    if request.mode not in family.pipelines:
        raise RequestError(f"{family.label} models have no {request.mode} pipeline in diffusers; they run: "
                           f"{', '.join(family.pipelines)}")
    if model.distilled_cfg is None and request.distilled_cfg != REQUEST_FIELDS["distilled_cfg"].default:
        raise RequestError(f"model {model.name!r} ({family.label}) has no distilled guidance; leave distilled_cfg at "
                           f"{REQUEST_FIELDS['distilled_cfg'].default}")
