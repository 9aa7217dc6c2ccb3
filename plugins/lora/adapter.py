"""The LoRA adapter: resolves units to checked files, keeps loaded adapters in a bounded LRU, sets them per run.

Isolation between requests rests on three rules:
- adapters are named by the file's content hash, never by a name a user typed;
- `activate` runs with the model lock held, sets exactly the requested adapters and weights, and
  disables every LoRA layer on exit, so the next request starts from the plain model;
- an adapter evicted from the LRU is deleted from the model (`delete_adapters`), so its memory returns.
"""

from __future__ import annotations

import contextlib
import re
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

import torch

from t2i.recipes.infotext import PROMPT_TAGS_FIELD
from t2i.models.access import HUB_ID
from t2i.plugins import Adapter, CliFlag, Param
from t2i.request import RequestError

from .files import LoraFile, LoraLibrary, check_lora_file

WEIGHT = Param("weight", "float", default=1.0, minimum=-2.0, maximum=2.0, step=0.05, label="Weight",
               help="0 turns the LoRA off; negative weights push away from what it learned")
NAME = Param("name", "choice", label="LoRA", help="a LoRA from the library folder (or a hub id: owner/name)")
PROMPT_TAG = re.compile(r"<lora:([^<>]*)>")


class LoraAdapter(Adapter):
    """LoRAs from the library folder, several at once, each with its own weight."""

    name = "lora"
    label = "LoRA"
    params = (NAME, WEIGHT)
    max_units = 5
    cli_flag = CliFlag("--lora", "PATH_OR_NAME:WEIGHT",
                       "a LoRA file, diffusers folder, library name or hub id, with its weight (repeatable)")
    ui_module = ".ui"

    def __init__(self, settings):
        self.library = LoraLibrary(settings.lora_dir, settings.lora_max_mb << 20, settings.lora_local_paths)
        self.capacity = max(1, settings.lora_cache_size)

    def choices(self, param: Param) -> list[str]:
        """The library's LoRAs, listed afresh each time (a trainer or an upload may just have added one)."""
        return self.library.names() if param.name == "name" else list(param.choices)

    def unit_from_values(self, values: Mapping) -> dict:
        """A unit naming a known LoRA (library, allowed local path or hub id) with a weight in range."""
        unknown = sorted(set(values) - {"name", "weight"})
        if unknown:
            raise RequestError(f"lora: unknown parameter {unknown[0]!r}; expected: name, weight")
        weight = values.get("weight", WEIGHT.default)
        try:
            WEIGHT.check(weight)
        except RequestError as exc:
            raise RequestError(f"lora: {exc}") from None
        name = values.get("name")
        self.library.resolve(name)  # before the model lock: unknown names, bad headers, downloads
        return {"name": name, "weight": weight}

    def unit_from_cli(self, text: str) -> dict:
        """A unit from `PATH_OR_NAME[:WEIGHT]` (the weight is whatever follows the last colon, if a number)."""
        name, _, weight = text.rpartition(":")
        try:
            return {"name": name, "weight": float(weight)} if name else {"name": text, "weight": WEIGHT.default}
        except ValueError:
            return {"name": text, "weight": WEIGHT.default}

    def units_from_prompt(self, prompt: str) -> tuple[str, list[dict]]:
        """Units from `<lora:name>` / `<lora:name:weight>` tags, and the prompt without the tags."""
        units = []
        if len(PROMPT_TAG.findall(prompt)) > self.max_units:  # counted before any file is read or fetched
            raise RequestError(f"lora: at most {self.max_units} LoRAs per request")
        for match in PROMPT_TAG.finditer(prompt):
            fields = match.group(1).split(":")
            if len(fields) > 2 or not fields[0].strip():
                raise RequestError(f"{match.group(0)}: write <lora:name> or <lora:name:weight>")
            try:
                weight = float(fields[1]) if len(fields) == 2 else WEIGHT.default
            except ValueError:
                raise RequestError(f"{match.group(0)}: the weight must be a number") from None
            units.append(self.unit_from_values({"name": fields[0].strip(), "weight": weight}))
        if not units:
            return prompt, []
        return re.sub(r"\s{2,}", " ", PROMPT_TAG.sub("", prompt)).strip(), units

    @contextlib.contextmanager
    def activate(self, model, units: list[dict]):
        """Load what is missing, set exactly these adapters and weights, and disable all LoRA layers on exit."""
        if len(units) > self.max_units:  # prompt tags and rows together
            raise RequestError(f"lora: at most {self.max_units} LoRAs per request; got {len(units)}")
        loras = [self.library.resolve(unit["name"]) for unit in units]
        names = [lora.adapter_name for lora in loras]
        if len(set(names)) < len(names):
            raise RequestError("lora: the same LoRA is listed twice; give it once with the combined weight")
        resident = model.cache.setdefault("lora", ResidentAdapters(self.capacity, self.library.max_bytes))
        pipe = model.pipeline
        try:
            for lora in loras:
                resident.ensure(pipe, lora, keep=names)
            pipe.set_adapters(names, adapter_weights=[float(unit["weight"]) for unit in units])
            pipe.enable_lora()
            yield
        finally:
            # also after a failed load: a LoRA loaded just before it would otherwise stay switched on
            if any(pipe.get_list_adapters().values()):
                pipe.disable_lora()

    def describe(self, units: list[dict]) -> dict[str, str]:
        """A1111's 'Lora hashes' (name and 12-digit content hash of each LoRA) and a `<lora:name:weight>` tag each."""
        entries, tags = [], []
        for unit in units:
            lora = self.library.resolve(unit["name"])
            shown = Path(lora.name).name.removesuffix(".safetensors")  # no local folders in image metadata
            entries.append(f"{shown.replace(':', '').replace(',', '')}: {lora.short_hash}")
            # the name as given, which replays (library name, hub id), unless it is a local path
            tagged = lora.name if lora.name == Path(lora.name).name or HUB_ID.match(lora.name) else shown
            tags.append(f"<lora:{tagged}:{float(unit['weight'])}>")
        return {"Lora hashes": ", ".join(entries), PROMPT_TAGS_FIELD: " ".join(tags)}

    def fits(self, model, path: Path, name: str) -> None:
        """Refuse a LoRA file `model` cannot take, with the message generation would give for it."""
        # no model lock: only layer names and shapes are read, and a resident adapter's wrapper is looked through
        check_lora_file(model.pipeline, path, name, self.library.max_bytes)

    def trigger_words(self, name: str) -> tuple[str, ...]:
        """The trigger words a LoRA's file declares (ours, or kohya's most frequent tags)."""
        return self.library.resolve(name).trigger_words


class ResidentAdapters:
    """The adapters loaded into one model, least recently used deleted (for real) beyond `capacity`."""

    def __init__(self, capacity: int, max_bytes: int):
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.loaded: OrderedDict[str, LoraFile] = OrderedDict()  # adapter name -> file

    def ensure(self, pipe, lora: LoraFile, keep: list[str]) -> None:
        """Make `lora` resident in `pipe`; checks happen before the model is touched."""
        if lora.adapter_name in self.loaded:
            self.loaded.move_to_end(lora.adapter_name)
        else:
            check_lora_file(pipe, lora.path, lora.name, self.max_bytes)
            try:
                # by path, not the tensors: diffusers then also reads the adapter config saved in the file
                # (lora_alpha), without which a LoRA with alpha != rank loads at the wrong strength;
                # use_safetensors rules out its pickle fallback
                pipe.load_lora_weights(str(lora.path), adapter_name=lora.adapter_name, use_safetensors=True,
                                       local_files_only=True)
            except (ValueError, RuntimeError, KeyError) as exc:
                self._delete(pipe, lora.adapter_name)  # a part may already be injected
                raise RequestError(f"LoRA {lora.name!r} could not be loaded: {str(exc).splitlines()[0][:200]}") from exc
            self.loaded[lora.adapter_name] = lora
        # a request may use more LoRAs than the capacity; the extra ones go when a later request runs
        for name in [n for n in self.loaded if n not in keep][:max(0, len(self.loaded) - self.capacity)]:
            self._delete(pipe, name)
            del self.loaded[name]

    @staticmethod
    def _delete(pipe, adapter_name: str) -> None:
        if any(adapter_name in names for names in pipe.get_list_adapters().values()):
            pipe.delete_adapters([adapter_name])
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
