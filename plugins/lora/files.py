"""LoRA files: find them (library folder, local path, hub id), read their trigger words, check them before loading.

Checks come in three steps. `load_lora_tensors` needs only the file: header limits, tensor count, float
dtypes. `check_lora_fits` needs the model: every LoRA weight must name a layer the model has, with matching
shapes, so a LoRA made for another architecture (a Flux LoRA on SDXL) is refused before anything touches the
model. `check_finite` last: scanning every value for NaN/Inf is the slow part (about 2 s for a 78 MB bf16 Flux
LoRA on one core), so a LoRA of another family is refused before it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft, convert_unet_state_dict_to_peft
from safetensors.torch import load_file

from t2i.models.file_hash import file_sha256
from t2i.models.access import HUB_ID
from t2i.request import RequestError
from t2i.models.file_checks import read_safetensors_header
from t2i.train.family_training import FAMILY_KEY

MAX_HEADER_BYTES = 4 << 20  # real LoRA headers, kohya metadata included, are under 1 MB; parsing 4 MB takes < 1 s
MAX_TENSORS = 20_000  # a full SDXL LoRA (UNet + both text encoders, with alphas) has about 2,500
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
TRIGGER_WORDS_KEY = "t2i_trigger_words"  # our own metadata key: a JSON list (or comma-separated words)
WEIGHTS_NAME = "pytorch_lora_weights.safetensors"  # what diffusers' save_lora_weights writes
KOHYA_SUFFIX = ".kohya"  # NAME.kohya.safetensors: the kohya/A1111-keyed copy the trainer writes beside NAME.safetensors
UPLOAD_NAME = re.compile(r"^\w[\w.+-]{0,99}$")  # names an upload may be saved under
LORA_COMPONENTS = ("unet", "transformer", "text_encoder", "text_encoder_2")


@dataclass(frozen=True)
class LoraFile:
    """One checked LoRA file and the name a user calls it by."""

    name: str  # library name, local path or hub id
    path: Path  # the .safetensors file
    sha256: str
    trigger_words: tuple[str, ...] = ()

    @property
    def short_hash(self) -> str:
        """The 12 hex digits A1111 writes in 'Lora hashes'."""
        return self.sha256[:12]

    @property
    def adapter_name(self) -> str:
        """The adapter's name inside the model: from the content, never from what a user typed."""
        return f"lora_{self.sha256[:16]}"


def read_lora_header(path: Path, max_bytes: int) -> dict:
    """The header of a LoRA file after size, header, tensor-count, dtype and shape checks."""
    header = read_safetensors_header(path, max_bytes, MAX_HEADER_BYTES)
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if not tensors:
        raise RequestError(f"{path.name} holds no tensors")
    if len(tensors) > MAX_TENSORS:
        raise RequestError(f"{path.name} holds {len(tensors)} tensors; a LoRA has at most {MAX_TENSORS}")
    for key, entry in tensors.items():
        if entry["dtype"] not in FLOAT_DTYPES:
            raise RequestError(f"{path.name}: tensor {key!r} is {entry['dtype']}; LoRA weights are floating point")
        if len(entry["shape"]) > 4:
            raise RequestError(f"{path.name}: tensor {key!r} has {len(entry['shape'])} dimensions; LoRA weights have at most 4")
    return header


def trigger_words(metadata: dict) -> tuple[str, ...]:
    """Trigger words from a file's metadata: our own key, else kohya's most frequent training tags."""
    ours = metadata.get(TRIGGER_WORDS_KEY, "").strip()
    if ours.startswith("["):  # the trainer writes a JSON list
        try:
            words = json.loads(ours)
        except ValueError:
            words = []
        return tuple(w.strip() for w in words if isinstance(w, str) and w.strip())
    if ours:
        return tuple(w.strip() for w in ours.split(",") if w.strip())
    try:  # kohya: {"<dataset folder>": {"<tag>": count}}; other tools write it differently or not at all
        frequency = json.loads(metadata.get("ss_tag_frequency", "{}"))
        counts: dict[str, int] = {}
        for tags in frequency.values():
            for tag, count in tags.items():
                counts[tag.strip()] = counts.get(tag.strip(), 0) + int(count)
    except (ValueError, TypeError, AttributeError):
        return ()
    return tuple(tag for tag, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:8] if tag)


def load_lora_tensors(path: Path, label: str, max_bytes: int) -> dict[str, torch.Tensor]:
    """The tensors of a LoRA file, its header re-checked (the file may have changed)."""
    read_lora_header(path, max_bytes)
    return load_file(path)


def check_finite(tensors: dict[str, torch.Tensor], label: str) -> None:
    """Raise RequestError when a LoRA tensor holds NaN or infinite values."""
    for key, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise RequestError(f"LoRA {label!r}: tensor {key!r} holds NaN or infinite values")


def check_lora_file(pipe, path: Path, label: str, max_bytes: int) -> None:
    """Raise RequestError unless `pipe` can take the LoRA file: what generation checks before loading, and what an
    upload is checked against (the model chosen in the form) before it joins the library."""
    tensors = load_lora_tensors(path, label, max_bytes)
    check_lora_fits(pipe, tensors, label)
    check_finite(tensors, label)


def check_lora_fits(pipe, tensors: dict[str, torch.Tensor], label: str) -> None:
    """Raise RequestError unless every weight of the LoRA belongs to a layer of `pipe` with matching shapes."""
    try:  # diffusers' own conversion for this pipeline's family: kohya/A1111, BFL and older keys become diffusers'
        # with the UNet's config, as load_lora_weights passes it: SDXL kohya files' original (SGM) block names
        # are mapped onto diffusers' blocks only then
        unet = {"unet_config": pipe.unet.config} if getattr(pipe, "unet", None) is not None else {}
        converted = type(pipe).lora_state_dict(dict(tensors), **unet)
    except (ValueError, KeyError, IndexError, RuntimeError, AssertionError, AttributeError) as exc:
        raise RequestError(f"LoRA {label!r} is not in a LoRA format t2i can read: {str(exc).splitlines()[0][:200]}") from exc
    # SD and SDXL loaders return (weights, network alphas); the transformer families' loaders the weights alone
    state_dict = converted[0] if isinstance(converted, tuple) else converted
    parts: dict[str, dict] = {}
    for key, value in state_dict.items():
        component, _, rest = key.partition(".")
        if component not in LORA_COMPONENTS or getattr(pipe, component, None) is None:
            raise RequestError(f"{label!r} is not a LoRA this model can take: {key!r} belongs to none of "
                               f"its parts ({', '.join(c for c in LORA_COMPONENTS if getattr(pipe, c, None) is not None)})")
        parts.setdefault(component, {})[rest] = value
    problems, total = [], 0
    for component, weights in parts.items():
        model = getattr(pipe, component)
        peft_weights = _to_peft(component, model, weights)
        total += len(peft_weights)
        problems += [f"{component}.{p}" for p in _layer_problems(model, peft_weights)]
    if problems:
        raise RequestError(f"LoRA {label!r} does not fit this model (made for another architecture?): "
                           f"{len(problems)} of {total} weights do not match its layers, e.g. {problems[0]}")


def _to_peft(component: str, model, weights: dict) -> dict:
    """The weights with peft keys (`<layer>.lora_A.weight`), converted as diffusers converts them when loading."""
    if component in ("unet", "transformer"):
        return weights if "lora_A" in next(iter(weights)) else convert_unet_state_dict_to_peft(weights)
    converted = convert_state_dict_to_peft(convert_state_dict_to_diffusers(weights))
    if not hasattr(model, "text_model"):  # transformers 5 text encoders have no `text_model.` level
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    return converted


def _layer_problems(model, weights: dict) -> list[str]:
    """Why weights do not fit `model`: a layer it lacks, a layer type LoRA cannot adapt, or another shape."""
    problems = []
    for key, value in weights.items():
        match = re.fullmatch(r"(.+)\.(lora_A|lora_B|lora_magnitude_vector)(?:\.weight)?", key)
        if match is None:
            problems.append(f"{key}: not a LoRA weight")
            continue
        layer_name, part = match.groups()
        try:
            layer = model.get_submodule(layer_name)
        except AttributeError:
            problems.append(f"{layer_name}: no such layer")
            continue
        layer = getattr(layer, "base_layer", layer)  # already wrapped by another resident adapter
        if isinstance(layer, torch.nn.Linear):
            inputs, outputs = layer.in_features, layer.out_features
        elif isinstance(layer, torch.nn.Conv2d):
            inputs, outputs = layer.in_channels, layer.out_channels
        else:
            problems.append(f"{layer_name}: a {type(layer).__name__} layer cannot take a LoRA")
            continue
        shape = tuple(value.shape)
        fits = {"lora_A": len(shape) >= 2 and shape[1] == inputs, "lora_B": len(shape) >= 2 and shape[0] == outputs,
                "lora_magnitude_vector": value.numel() == outputs}[part]
        if not fits:
            problems.append(f"{layer_name}.{part}: shape {list(shape)} for a layer of {inputs} -> {outputs}")
    return problems


class LoraLibrary:
    """LoRAs by name: files and diffusers folders in the library folder, plus local paths (if allowed) and hub ids."""

    def __init__(self, folder: Path, max_bytes: int, local_paths: bool = False):
        self.folder = folder
        self.max_bytes = max_bytes
        self.local_paths = local_paths
        self._checked: dict[tuple, LoraFile] = {}  # (path, size, mtime) -> checked file; hashing is not free
        self._families: dict[tuple, str | None] = {}  # (path, size, mtime) -> the family its metadata names
        self._lock = threading.Lock()

    def names(self, family: str | None = None) -> list[str]:
        """Names in the library folder now (one directory listing, so new files show up at once). With `family`,
        only the LoRAs for that model family: those whose metadata names it, and those that name none."""
        found = []
        for entry in os.scandir(self.folder) if self.folder.is_dir() else ():
            if entry.name.startswith("."):  # uploads in progress, and hidden files
                continue
            if entry.name.endswith(".safetensors") and entry.is_file():
                name = entry.name.removesuffix(".safetensors")
                if not self._is_kohya_copy(name):
                    found.append((name, Path(entry.path)))
            elif entry.is_dir() and (Path(entry.path) / WEIGHTS_NAME).is_file():
                found.append((entry.name, Path(entry.path) / WEIGHTS_NAME))
        return sorted((name for name, path in found if family is None or self._family(path) in (None, family)),
                      key=str.lower)

    def _family(self, path: Path) -> str | None:
        """The family a LoRA file's metadata names (FAMILY_KEY, written by our trainer); None when it names none
        or cannot be read (generation's checks then say what is wrong with it)."""
        try:
            stat = path.stat()
            key = (str(path), stat.st_size, stat.st_mtime_ns)
            if key not in self._families:
                metadata = read_safetensors_header(path, self.max_bytes, MAX_HEADER_BYTES).get("__metadata__") or {}
                self._families[key] = metadata.get(FAMILY_KEY) if isinstance(metadata, dict) else None
            return self._families[key]
        except (OSError, RequestError):
            return None

    def _is_kohya_copy(self, name: str) -> bool:
        """NAME.kohya beside NAME: the trainer's kohya/A1111-keyed copy of one LoRA, offered once as NAME."""
        return name.endswith(KOHYA_SUFFIX) and (self.folder / f"{name.removesuffix(KOHYA_SUFFIX)}.safetensors").is_file()

    def resolve(self, name: str) -> LoraFile:
        """The checked file a name stands for; unknown names, bad files and failed downloads raise RequestError."""
        path = self._path_for(name)
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._checked and self._checked[key].name == name:
                return self._checked[key]
        header = read_lora_header(path, self.max_bytes)
        lora = LoraFile(name=name, path=path, sha256=file_sha256(path),
                        trigger_words=trigger_words(header.get("__metadata__") or {}))
        with self._lock:
            self._checked[key] = lora
        return lora

    def add(self, source: Path, name: str, fits: Callable[[Path, str], None] = lambda path, name: None) -> LoraFile:
        """Copy a checked .safetensors file into the library as `name`; an existing name, or a file that `fits`
        (path, name) refuses, is refused before anything is copied."""
        if not UPLOAD_NAME.match(name or ""):
            raise RequestError(f"LoRA name {name!r} may hold only letters, digits and . _ + - (at most 100)")
        if name in self.names():
            raise RequestError(f"a LoRA named {name!r} is already in the library")
        read_lora_header(Path(source), self.max_bytes)
        fits(Path(source), name)
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.", suffix=".tmp")
        os.close(fd)
        try:  # copy under a hidden name, then rename: a scan never sees half a file
            shutil.copyfile(source, tmp)
            os.replace(tmp, self.folder / f"{name}.safetensors")
        finally:
            Path(tmp).unlink(missing_ok=True)
        return self.resolve(name)

    def remove(self, name: str, sha256: str) -> None:
        """Delete the library file `name` if it still holds the content `sha256` (what an upload added)."""
        path = self.folder / f"{name}.safetensors"
        if not _plain_name(name) or not path.is_file() or self.resolve(name).sha256 != sha256:
            raise RequestError(f"{name!r} is not a LoRA you uploaded, or it was replaced since")
        path.unlink()

    def _path_for(self, name: str) -> Path:
        if not isinstance(name, str) or not name.strip():
            raise RequestError("a LoRA name is required")
        if _plain_name(name):  # names with folders in them never reach outside the library
            for candidate in (self.folder / f"{name}.safetensors", self.folder / name / WEIGHTS_NAME):
                if candidate.is_file():
                    return candidate
        local = Path(name).expanduser()
        if self.local_paths and local.exists():
            if local.is_dir():
                local = local / WEIGHTS_NAME
            if local.suffix != ".safetensors" or not local.is_file():
                raise RequestError(f"{name}: only .safetensors LoRA files (or diffusers folders holding "
                                   f"{WEIGHTS_NAME}) are loaded")
            return local
        if HUB_ID.match(name):
            return _download(name)
        shown = ", ".join(self.names()[:20]) or "none yet"
        raise RequestError(f"unknown LoRA {name!r}; the library has: {shown}")  # its server path stays private


def _plain_name(name: str) -> bool:
    """A name that is one file or folder name (as A1111 names LoRAs, spaces allowed), not a path."""
    return len(name) <= 200 and not name.startswith(".") and not any(c in name for c in "/\\\0")


def _download(repo_id: str) -> Path:
    """A hub repository's LoRA file: diffusers' standard name, else its only .safetensors file."""
    from huggingface_hub import hf_hub_download, list_repo_files
    from huggingface_hub.errors import EntryNotFoundError

    try:
        try:
            return Path(hf_hub_download(repo_id, WEIGHTS_NAME))
        except EntryNotFoundError:
            files = [f for f in list_repo_files(repo_id) if f.endswith(".safetensors")]
            if len(files) != 1:
                raise RequestError(f"LoRA repository {repo_id!r} has {len(files)} .safetensors files and no "
                                   f"{WEIGHTS_NAME}; cannot tell which to load") from None
            return Path(hf_hub_download(repo_id, files[0]))
    except RequestError:
        raise
    except Exception as exc:  # offline, no such repository, gated, network errors
        raise RequestError(f"could not fetch LoRA {repo_id!r} from the model hub (offline, or no such repository): "
                           f"{type(exc).__name__}") from exc
