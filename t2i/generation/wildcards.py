"""Wildcards and dynamic prompts (the `dynamicprompts` library): `{red|blue}` variants and `__colours__` lines from
the wildcards folder, expanded before the safety gate sees the prompt.

Random mode draws with each image's own seed (generate_per_image: a batch is one request per image), so images of
a batch differ as A1111's dynamic prompts make them, and an image's seed alone remakes its prompt; combinatorial
mode makes one image per expansion (generate_combinations), each with the request's seed. The recipe records the expanded prompt as its
prompt, so replaying it needs neither the template nor the folder, and keeps the template beside it (`Template`,
`Negative Template`, as A1111's dynamic-prompts extension writes them).
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from dynamicprompts.generators import CombinatorialPromptGenerator, RandomPromptGenerator
from dynamicprompts.wildcards import WildcardManager
from dynamicprompts.wildcards.collection import WildcardCollection
from dynamicprompts.wildcards.values import WildcardValues
from pyparsing import ParseBaseException

from t2i.generation.progress import ProgressCallback, ProgressEvent
from t2i.request import MAX_SEED, WILDCARD_MODES, GenerationRequest, GenerationResult, RequestError
from t2i.settings import Settings

if TYPE_CHECKING:  # the engine imports this module
    from t2i.generation.engine import Engine

WILDCARD_SUFFIX = ".txt"  # one value per line, as A1111's extension reads them
TEMPLATE_FIELDS = {"prompt": "Template", "negative_prompt": "Negative Template"}  # infotext names


class WildcardError(RequestError):
    """A wildcard that names no file, a file over the size cap, or a template that does not parse."""


def has_dynamic_syntax(text: str) -> bool:
    """Whether `text` holds a variant (`{a|b}`) or a wildcard (`__name__`); other text is left as it is."""
    return "{" in text or "__" in text


class _CappedTextFile(WildcardCollection):
    """One wildcard file, read when first used and refused when it is over the size cap."""

    def __init__(self, path: Path, name: str, max_bytes: int):
        self.path, self.name, self.max_bytes = path, name, max_bytes
        self._lines: list[str] | None = None

    def get_values(self) -> list[str]:
        if self._lines is None:
            size = self.path.stat().st_size
            if size > self.max_bytes:
                raise WildcardError(f"wildcard file __{self.name}__ is {size >> 10} KB; the limit is "
                                    f"{self.max_bytes >> 10} KB (T2I_WILDCARDS_MAX_KB)")
            text = self.path.read_text(encoding="utf-8", errors="replace")
            self._lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        return self._lines


class _StrictWildcards(WildcardManager):
    """The library's wildcard manager, but a wildcard that matches nothing is an error, not left in the prompt."""

    def get_values(self, wildcard: str) -> WildcardValues:
        values = super().get_values(wildcard)
        if not values:
            folder = f" in {self.folder}" if self.folder else " (T2I_WILDCARDS_DIR is not a folder)"
            raise WildcardError(f"no wildcard file __{wildcard}__{folder}")
        return values


def _read_folder(folder: Path, max_bytes: int) -> dict[str, WildcardCollection]:
    """Every `.txt` file under `folder` by wildcard name (`colours`, `animals/birds`); links leading out are skipped."""
    root = folder.resolve()
    files = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for filename in filenames:
            path = Path(dirpath) / filename
            if path.suffix != WILDCARD_SUFFIX or not path.resolve().is_relative_to(root):
                continue
            name = path.relative_to(root).with_suffix("").as_posix()
            files[name] = _CappedTextFile(path, name, max_bytes)
    return files


@dataclass
class Expanded:
    """A request with its prompts expanded, and the templates they came from (empty when nothing was expanded)."""

    request: GenerationRequest
    templates: dict[str, str] = field(default_factory=dict)


class Wildcards:
    """Expands requests' dynamic prompts with the wildcard files of one folder (re-read when the folder changes)."""

    def __init__(self, settings: Settings):
        self.folder = settings.wildcards_dir
        self.max_bytes = settings.wildcards_max_kb << 10
        self._manager: _StrictWildcards | None = None
        self._stamp: tuple | None = None
        self._lock = threading.Lock()

    def manager(self) -> WildcardManager:
        """The library's manager over the folder's files, rebuilt when a file was added, removed or changed."""
        stamp = self._folder_stamp()
        with self._lock:
            if self._manager is None or stamp != self._stamp:
                files = _read_folder(self.folder, self.max_bytes) if self.folder.is_dir() else {}
                self._manager = _StrictWildcards(root_map={"": [files]})
                self._manager.folder = self.folder if self.folder.is_dir() else None
                self._stamp = stamp
            return self._manager

    def _folder_stamp(self) -> tuple:
        if not self.folder.is_dir():
            return ()
        return tuple(sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size)
                            for p in self.folder.rglob(f"*{WILDCARD_SUFFIX}") if p.is_file()))

    def expand(self, request: GenerationRequest, seed: int) -> Expanded:
        """The request with its prompt and negative prompt expanded at random, drawn with `seed`."""
        expanded, templates = {}, {}
        for name, label in TEMPLATE_FIELDS.items():
            text = getattr(request, name)
            if not has_dynamic_syntax(text):
                continue
            generator = RandomPromptGenerator(self.manager(), seed=seed)
            expanded[name] = self._run(lambda: generator.generate(text, 1)[0], text)
            if expanded[name] != text:
                templates[label] = text
        if not templates:
            return Expanded(request)
        return Expanded(replace(request, **expanded), templates)

    def combinations(self, template: str, limit: int) -> list[str]:
        """Every expansion of `template` in order; a WildcardError when there are more than `limit`."""
        if not has_dynamic_syntax(template):
            return [template]
        generator = CombinatorialPromptGenerator(self.manager())
        prompts = self._run(lambda: generator.generate(template, max_prompts=limit + 1), template)
        if len(prompts) > limit:
            raise WildcardError(f"the prompt has more than {limit} combinations; the limit is {limit} "
                                "(T2I_MAX_IMAGES)")
        return prompts

    @staticmethod
    def _run(expand, template: str):
        try:
            return expand()
        except ParseBaseException as exc:
            raise WildcardError(f"dynamic prompt syntax in {template[:60]!r}: {exc.msg} at character "
                                f"{exc.loc + 1}") from exc


def generate_combinations(engine: Engine, request: GenerationRequest, on_progress: ProgressCallback | None = None,
                          cancel: threading.Event | None = None) -> GenerationResult:
    """Combinatorial mode: one request per expansion of the prompt, all with one seed, as one result.

    Every expansion is checked (its limits, the safety gate) before the first image is made, and together they
    stay within T2I_MAX_IMAGES. Each image's recipe holds its expanded prompt and the template.
    """
    request.validate(engine.settings)
    per_request = request.batch_count * request.batch_size
    prompts = engine.wildcards.combinations(request.prompt, max(1, engine.settings.max_images // per_request))
    seed = request.seed if request.seed >= 0 else secrets.randbelow(MAX_SEED + 1)
    random_mode = WILDCARD_MODES[0]  # each expansion is a plain prompt: nothing is left to draw
    requests = [replace(request, prompt=prompt, seed=seed, wildcards=random_mode) for prompt in prompts]
    for each in requests:
        engine.prepare(each)
    result = GenerationResult()
    for each in requests:
        part = engine.generate(each, on_progress, cancel)
        for item in part.images:
            if request.prompt != each.prompt:
                item.parameters["infotext_extra"] = {TEMPLATE_FIELDS["prompt"]: request.prompt,
                                                     **item.parameters.get("infotext_extra", {})}
        result.images += part.images
        result.model, result.mode = part.model, part.mode
    return result


def draws_per_image(request: GenerationRequest) -> bool:
    """Whether a random-mode request makes more than one image from a dynamic prompt (each draws its own)."""
    return (request.wildcards == WILDCARD_MODES[0] and request.batch_count * request.batch_size > 1
            and any(has_dynamic_syntax(text) for text in (request.prompt, request.negative_prompt)
                    if isinstance(text, str)))


def generate_per_image(engine: Engine, request: GenerationRequest, on_progress: ProgressCallback | None = None,
                       cancel: threading.Event | None = None) -> GenerationResult:
    """Random mode over a batch: one request per image with that image's seed (the request's seed, then +1 ...),
    so each image draws its own expansion and records it; the seed of an image alone remakes it.

    Every expansion is checked (its limits, the safety gate) before the first image is made; progress counts
    the images as batches.
    """
    request.validate(engine.settings)
    count = request.batch_count * request.batch_size
    seed = request.seed if request.seed >= 0 else secrets.randbelow(MAX_SEED + 1)
    requests = [replace(request, seed=(seed + k) % (MAX_SEED + 1), batch_count=1, batch_size=1)
                for k in range(count)]
    for each in requests:
        engine.prepare(each)
    result = GenerationResult()
    for number, each in enumerate(requests, 1):
        def progress(event: ProgressEvent, number=number):
            on_progress(replace(event, batch=number, total_batches=count))
        part = engine.generate(each, progress if on_progress else None, cancel)
        result.images += part.images
        result.model, result.mode = part.model, part.mode
    return result
