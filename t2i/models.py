"""Find, load and cache diffusion models: the embedded model, diffusers folders, hub ids, .safetensors files.

Loaded pipelines are kept in a small LRU cache; the img2img and inpainting pipelines of a model are
built with `from_pipe`, so they share the already-loaded components instead of loading them again.
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import (
    AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image, StableDiffusionPipeline,
    StableDiffusionXLPipeline,
)

from .fastpath import apply_fast_path, plan_for
from .request import RequestError
from .safetensors_check import check_safetensors_file
from .settings import EMBEDDED_MODEL_DIR, Settings, resolve_device, resolve_dtype

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")
MODE_PIPELINES = {"img2img": AutoPipelineForImage2Image, "inpaint": AutoPipelineForInpainting}


@dataclass
class LoadedModel:
    """A loaded model: its text-to-image pipeline, plus per-mode pipelines sharing its components."""

    name: str
    family: str  # "sd" (1.x/2.x) or "sdxl"
    pipeline: StableDiffusionPipeline | StableDiffusionXLPipeline
    short_hash: str
    lock: threading.Lock = field(default_factory=threading.Lock)  # one run at a time per model
    cache: dict = field(default_factory=dict)  # per-model helpers built on first use (compel, previews)
    _mode_pipelines: dict = field(default_factory=dict)

    def __post_init__(self):
        # samplers are built from the model's own schedule; kept apart because each request swaps schedulers
        self.scheduler_config = dict(self.pipeline.scheduler.config)

    @property
    def native_size(self) -> int:
        return self.pipeline.unet.config.sample_size * self.pipeline.vae_scale_factor

    def pipeline_for(self, mode: str):
        """The pipeline for txt2img, img2img or inpaint, built once from the shared components."""
        if mode == "txt2img":
            return self.pipeline
        if mode not in self._mode_pipelines:
            self._mode_pipelines[mode] = MODE_PIPELINES[mode].from_pipe(self.pipeline)
        return self._mode_pipelines[mode]


def _short_hash(path: Path) -> str:
    """First 10 hex digits of the SHA-256 of the weights, as A1111 shows as 'Model hash'."""
    if path.is_dir():
        candidates = sorted((path / "unet").glob("*.safetensors")) or sorted(path.rglob("*.safetensors"))
        if not candidates:
            return ""
        path = candidates[0]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:10]


def _load_pipeline(spec: str, settings: Settings):
    """Load a pipeline for a model spec; raise RequestError with a user-facing reason when it cannot."""
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    path = EMBEDDED_MODEL_DIR if spec == "embedded" else Path(spec).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").exists():
            raise RequestError(f"model folder {spec!r} has no model_index.json (not a diffusers pipeline)")
        class_name = json.loads((path / "model_index.json").read_text()).get("_class_name", "")
        if "StableDiffusion" not in class_name:
            raise RequestError(f"model {spec!r} is a {class_name or 'unknown'} pipeline; "
                               "t2i runs Stable Diffusion 1.x/2.x and SDXL models")
        pipe = AutoPipelineForText2Image.from_pretrained(path, dtype=dtype, use_safetensors=True)
        source = path
    elif path.suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin"):
        if path.suffix != ".safetensors":
            raise RequestError(f"{path.name}: only .safetensors checkpoints are loaded (pickle files can run code)")
        if not path.is_file():
            raise RequestError(f"model file {spec!r} does not exist")
        keys = check_safetensors_file(path, max_bytes=16 << 30)
        xl = any(k.startswith("conditioner.embedders.1") for k in keys)
        cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
        try:
            pipe = cls.from_single_file(str(path), dtype=dtype)
        except (OSError, ValueError) as exc:  # it fetches the matching config from the hub
            raise RequestError(f"could not load {path.name} (single-file checkpoints need the model hub for their "
                               f"config; save it as a diffusers folder instead): {str(exc).splitlines()[0]}") from exc
        source = path
    elif HUB_ID.match(spec):
        try:
            pipe = AutoPipelineForText2Image.from_pretrained(spec, dtype=dtype, use_safetensors=True)
        except OSError as exc:
            raise RequestError(f"could not load {spec!r} from the model hub (offline, or no such model): "
                               f"{str(exc).splitlines()[0]}") from exc
        source = Path(pipe.unet.config._name_or_path)  # the hub cache folder
    else:
        raise RequestError(f"unknown model {spec!r}: give 'embedded', a diffusers folder, a .safetensors file "
                           "or a hub id (owner/name)")
    if not isinstance(pipe, (StableDiffusionPipeline, StableDiffusionXLPipeline)):
        raise RequestError(f"model {spec!r} loaded as {type(pipe).__name__}; t2i runs SD 1.x/2.x and SDXL")
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    fast_path = plan_for(settings.speed, device, sum(p.numel() for p in pipe.unet.parameters()))
    apply_fast_path(pipe, fast_path)
    family = "sdxl" if isinstance(pipe, StableDiffusionXLPipeline) else "sd"
    short_hash = _short_hash(source) if source is not None and source.exists() else ""
    name = "embedded" if spec == "embedded" else (path.name if path.exists() else spec)
    return LoadedModel(name=name, family=family, pipeline=pipe, short_hash=short_hash, cache={"fast_path": fast_path})


class ModelCache:
    """Loaded models by spec, least recently used evicted beyond `settings.model_cache_size`."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, spec: str) -> LoadedModel:
        """The loaded model for `spec` ('' means the default model), loading it on first use."""
        spec = (spec or self.settings.default_model).strip()
        with self._lock:
            if spec in self._models:
                self._models.move_to_end(spec)
                return self._models[spec]
            model = _load_pipeline(spec, self.settings)
            self._models[spec] = model
            while len(self._models) > max(1, self.settings.model_cache_size):
                _, evicted = self._models.popitem(last=False)
                with evicted.lock:  # let a job still running on it finish before its memory goes
                    pass
                del evicted
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            return model

    def loaded(self) -> list[str]:
        """Specs of the models now in memory, most recent last."""
        return list(self._models)
