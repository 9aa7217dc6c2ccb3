"""The studio's core actions as plain functions over plain values, for any front end (Gradio, HTTP, tests)."""

from __future__ import annotations

import logging
import threading
from dataclasses import MISSING, dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any, Iterator

from PIL import Image

from t2i.generation.engine import Engine, ProgressEvent
from t2i.generation.stream import stream_generation
from t2i.recipes.outputs import save_result, session_folder
from t2i.web.uploads import load_image_file
from t2i.recipes.labels import Labeller
from t2i.recipes.infotext import infotext
from t2i.models.access import check_server_model, model_folder_entries
from t2i.web.admission import Admission
from t2i.web.ratelimit import RateLimiter
from t2i.request import REQUEST_FIELDS, GenerationRequest, GenerationResult, RequestError
from t2i.generation.samplers import DISTILLED_FOR, sampler_warning
from t2i.web.sessions import SessionUploads, upload_folder
from t2i.settings import Settings
from t2i.style_files import read_style_upload
from t2i.styles import SessionStyles, UnknownStyleError, apply_styles

log = logging.getLogger(__name__)


# Derived, so a declared field is on the form at once. Values arrive as widgets send them (20.0 for 20); images, and
# plugin units' image parameters, are uploaded file paths.
GenerateForm = make_dataclass("GenerateForm", [
    (f.name, Any, field(default=REQUEST_FIELDS[f.name].default) if f.default_factory is MISSING
     else field(default_factory=f.default_factory)) for f in fields(GenerationRequest)],
    namespace={"__module__": __name__,
               "__doc__": "The generate form as a front end sends it: GenerationRequest's fields and defaults."})


@dataclass
class StudioUpdate:
    """One update for the page: progress with a preview, or the finished images."""

    progress: ProgressEvent | None = None
    preview: Image.Image | None = None
    files: list[Path] = field(default_factory=list)
    info: str = ""
    seed: int | None = None


def _whole(name: str, value) -> int:
    """A whole number from a form field (UI widgets may send 20.0 for 20); refuses fractions and text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value % 1:
        raise RequestError(f"{name} must be a whole number; got {value!r}")
    return int(value)


def _reached(event: ProgressEvent | None) -> str:
    """Where a run got to, from its last progress event."""
    if event is None:
        return "before its first step"
    return f"at step {event.step}/{event.total_steps} of batch {event.batch}/{event.total_batches}"


def _generator(settings: Settings, engine: Engine):
    """What runs generations: `engine` itself, or Ray Serve replicas holding engines (T2I_BACKEND=ray)."""
    if settings.backend == "ray":
        from t2i.ray.backend import RayEngine  # Ray is an optional install

        return RayEngine(settings, engine)
    return engine


class Studio:
    """Holds the engine and settings; every method is one user action."""

    def __init__(self, settings: Settings | None = None, engine: Engine | None = None):
        self.settings = settings or Settings()
        self.engine = engine or Engine(self.settings)
        self.generator = _generator(self.settings, self.engine)  # where model work runs (T2I_BACKEND)
        self.labeller = Labeller.from_settings(self.settings)
        self.session_styles = SessionStyles(self.engine.styles)  # presets a session uploaded, for that session only
        self.rate_limiter = RateLimiter(self.settings.rate_limit_per_minute)
        # model work from every front end: as many at once as may share a batch, T2I_QUEUE_SIZE more waiting
        # batching groups what is in the engine at once; on Ray the replicas together hold `concurrency` requests
        self.admission = Admission(max(1, self.settings.batch_max, getattr(self.generator, "concurrency", 1)),
                                   self.settings.queue_size)
        self.uploads = SessionUploads(upload_folder(self.settings.data_dir))  # deleted as each session ends
        self._running: dict[str, set[threading.Event]] = {}  # session -> cancel events of its runs
        self._running_lock = threading.Lock()

    def request_from_form(self, form: GenerateForm, session: str = "") -> GenerationRequest:
        """A GenerationRequest from form values, with uploaded images decoded under the size caps.

        When a chosen style is one the session imported, every chosen style is applied here (the engine
        knows only the shared presets), so the recipe holds the styled prompt and no style names.
        """
        values = {name: getattr(form, name) for name in REQUEST_FIELDS}
        for name, spec in REQUEST_FIELDS.items():  # uploads first: each is screened before anything else is read
            if spec.type is Image.Image:
                values[name] = self._upload(values[name], name.replace("_", " ")) if values[name] else None
        for name, spec in REQUEST_FIELDS.items():
            if spec.type is int:
                values[name] = _whole(name.replace("_", " "), values[name])
        prompt, negative, styles = form.prompt, form.negative_prompt or "", tuple(form.styles or ())
        if (isinstance(prompt, str) and prompt.strip() and isinstance(negative, str)
                and self.session_styles.uses_imported(session, styles)):
            try:
                prompt, negative = apply_styles(prompt, negative, list(styles), self.session_styles.library(session))
            except UnknownStyleError as exc:
                raise RequestError(str(exc)) from exc
            styles = ()
        values.update(prompt=prompt, negative_prompt=negative, styles=styles, model=self._model(form.model))
        return GenerationRequest(**values, plugin_units=self._plugin_units(form.plugin_units))

    def _model(self, spec) -> str:
        """The form's model, if this server offers it (see model_access)."""
        if not isinstance(spec, (str, type(None))):
            raise RequestError(f"model must be a model name or hub id; got {spec!r}")
        check_server_model(spec or "", self.settings)
        return spec or ""

    def model_for(self, spec):
        """The loaded model the form's Model box names, as a generation would load it (e.g. to check a LoRA)."""
        return self.engine.models.get(self._model(spec))

    def _upload(self, path: str | bytes, what: str) -> Image.Image:
        """An uploaded image (a file, or bytes an API received), decoded under the caps and passed through the image
        safety checkers."""
        image = load_image_file(path, self.settings.max_upload_mb << 20, self.settings.max_pixels, what=what)
        if self.engine.safety.screen_image(image, what).flagged:
            raise RequestError(f"the {what} was refused by the safety checker")
        return image

    def _plugin_units(self, units: dict) -> dict:
        """Form units with their image parameters (file paths) decoded like any upload."""
        if not isinstance(units, dict):
            raise RequestError("plugin units must be a mapping of plugin name to a list of units")
        decoded = {}
        for name, plugin_units in units.items():
            plugin = self.engine.plugins.plugins.get(name)
            image_params = {p.name for p in plugin.params if p.type == "image"} if plugin else set()
            if not isinstance(plugin_units, list):  # the engine's validation names the problem
                decoded[name] = plugin_units
                continue
            decoded[name] = [{k: self._upload(v, f"{name} {k}") if k in image_params and isinstance(v, (str, Path))
                              else v for k, v in unit.items()} if isinstance(unit, dict) else unit
                             for unit in plugin_units]
        return decoded

    def control_previews(self, form: GenerateForm) -> list[Image.Image]:
        """The previews of the form's units (what each feeds the model, e.g. a ControlNet's control map)."""
        units = self.engine.plugins.units_for_request(self._plugin_units(form.plugin_units))
        size = self.engine.models.get(self._model(form.model)).native_size
        width, height = _whole("width", form.width) or size, _whole("height", form.height) or size
        previews = (self.engine.plugins.plugins[name].preview(unit, width, height)
                    for name, plugin_units in units.items() for unit in plugin_units)
        return [image for image in previews if image is not None]

    def generate(self, form: GenerateForm, session: str, client: str = "") -> Iterator[StudioUpdate]:
        """Run a generation, yielding previews while sampling and then the saved PNG files (the page's path).

        `client` (an address) is what the rate limit counts; without one the session is counted.
        """
        for event in self.run(form, session, client):
            if isinstance(event, GenerationResult):
                files = save_result(event, session_folder(self.settings.data_dir, session), self.labeller)
                notices = [item.notice for item in event.images if item.notice]
                notices += [warning] if (warning := self.sampler_warning(form.model, form.sampler)) else []
                first = event.images[0]
                yield StudioUpdate(files=files, info="\n".join([infotext(first.parameters), *notices]),
                                   seed=first.seed)
            else:
                yield StudioUpdate(progress=event, preview=event.previews[0] if event.previews else None)

    def run(self, form: GenerateForm, session: str, client: str = "",
            cancel: threading.Event | None = None) -> Iterator[ProgressEvent | GenerationResult]:
        """The one path of a generation for every front end: the rate limit, the request's checks, a place under
        the shared admission limit (QueueFull at once when none is left), then progress events and the result,
        not saved. A result whose every image the safety gate withheld is a refusal (RequestError).

        `cancel` stops this run alone; stop(session) stops every run of the session, waiting or running. A
        cancelled run ends without a result. A run that got its place logs how it ended (finished, cancelled or
        failed), the step it reached and how many runs are still running and waiting, once its place is given
        back and before its caller sees the result or the error.
        """
        self.rate_limiter.acquire(client or session)
        request = self.request_from_form(form, session)
        cancel = cancel or threading.Event()
        with self._running_lock:
            self._running.setdefault(session, set()).add(cancel)
        try:
            if not self.admission.acquire(cancel):
                return
            reached, result, outcome = None, None, "cancelled"  # cancelled: it ends with no result and no error
            try:
                for event in stream_generation(self.generator, request, cancel):
                    if isinstance(event, GenerationResult):
                        result = event  # the last event: handed on once the run's place is given back
                    else:
                        reached = event
                        yield event
                if result is not None and all(item.image is None for item in result.images):
                    raise RequestError(next(item.notice for item in result.images if item.notice))
                outcome = "finished" if result is not None else outcome
            except Exception as exc:
                outcome = f"failed ({type(exc).__name__})"
                raise
            finally:
                self.admission.release()
                # before the caller sees the result or the error; a cancelled run's only trace (operators, tests)
                log.info("generation %s %s; %d running, %d waiting", outcome, _reached(reached),
                         *self.admission.counts())
            if result is not None:
                yield result
        finally:
            with self._running_lock:  # an ended session leaves nothing behind
                self._running[session].discard(cancel)
                if not self._running[session]:
                    del self._running[session]

    def stop(self, session: str) -> None:
        """Stop the session's generations, running or waiting, at their next step (the Stop button, also over the
        API)."""
        with self._running_lock:
            for cancel in self._running.get(session, ()):
                cancel.set()
        self.admission.wake()

    def sampler_warning(self, model: str, sampler: str) -> str:
        """A warning when `sampler` does not suit `model` ('' when it does; checked only for distilled samplers)."""
        if sampler not in DISTILLED_FOR:
            return ""
        return sampler_warning(sampler, self.engine.models.get(self._model(model)).scheduler_config)

    def plugins(self):
        """Plugins whose units a request can use (adapters, conditioners), for building the form."""
        return self.engine.plugins.user_facing()

    def style_names(self, session: str = "") -> list[str]:
        """Names of the shared style presets, then those the session imported."""
        return self.engine.styles.names() + self.session_styles.imported(session)

    def import_styles(self, path: str | Path, session: str) -> list[str]:
        """Import an uploaded A1111 styles.csv or Fooocus .json for this session only; the new style names.

        The file is parsed in memory and not kept.
        """
        try:
            return self.session_styles.add(session, read_style_upload(path, self.settings.styles_max_kb << 10))
        except ValueError as exc:
            raise RequestError(str(exc)) from exc

    def forget_styles(self, session: str) -> None:
        """Drop the styles a session imported."""
        self.session_styles.forget(session)

    def model_choices(self) -> list[str]:
        """Models to offer: the default, the embedded one, the model folder's, and any already loaded."""
        return list(dict.fromkeys([self.settings.default_model, "embedded", *model_folder_entries(self.settings),
                                   *self.engine.models.loaded()]))
