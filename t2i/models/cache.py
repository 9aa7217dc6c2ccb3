"""Find, load and cache diffusion models: the embedded model, diffusers folders, hub ids, .safetensors files.

Loaded pipelines are kept in an LRU cache bounded by count and by the bytes of their weights; the img2img
and inpainting pipelines of a model are built with `from_pipe`, so they share the already-loaded components
instead of loading them again. Single-file (A1111/Civitai) checkpoints take their component configs from a
local diffusers folder or the local hub cache, so they load offline.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import (
    AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image, StableDiffusionPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.loaders.single_file_utils import SingleFileComponentError, fetch_diffusers_config
from huggingface_hub import snapshot_download

from t2i.generation.fastpath import apply_fast_path, plan_for
from t2i.models.file_hash import file_sha256
from t2i.models.access import HUB_ID, model_folder_entries
from t2i.request import RequestError
from t2i.models.file_checks import read_safetensors_header
from t2i.settings import EMBEDDED_MODEL_DIR, Settings, resolve_device, resolve_dtype

MODE_PIPELINES = {"img2img": AutoPipelineForImage2Image, "inpaint": AutoPipelineForInpainting}
CONFIG_FILES = ["*.json", "**/*.json", "*.txt", "**/*.txt", "**/*.model"]  # a pipeline's configs, no weights
GIB = 1 << 30
log = logging.getLogger(__name__)


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

    def memory_bytes(self) -> int:
        """Bytes held by the parameters and buffers of this model's pipelines and of the modules its helpers keep
        in `cache` (such as loaded ControlNets), each storage counted once."""
        modules = [m for pipe in (self.pipeline, *self._mode_pipelines.values()) for m in pipe.components.values()]
        for helper in self.cache.values():
            modules.extend(helper.values() if isinstance(helper, dict) else [helper])
        storages = {}
        for module in modules:
            if isinstance(module, torch.nn.Module):
                for tensor in itertools.chain(module.parameters(), module.buffers()):
                    storage = tensor.untyped_storage()
                    storages[(tensor.device, storage.data_ptr())] = storage.nbytes()
        return sum(storages.values())


def _short_hash(path: Path) -> str:
    """First 10 hex digits of the SHA-256 of the weights, as A1111 shows as 'Model hash'."""
    if path.is_dir():
        candidates = sorted((path / "unet").glob("*.safetensors")) or sorted(path.rglob("*.safetensors"))
        if not candidates:
            return ""
        path = candidates[0]
    return file_sha256(path)[:10]


def _single_file_config(path: Path, header: dict, pipeline_class, settings: Settings) -> Path:
    """The local diffusers folder whose configs describe a single-file checkpoint's components."""
    if settings.single_file_config:
        folder = Path(settings.single_file_config).expanduser()
        if not (folder / "model_index.json").is_file():
            raise RequestError(f"T2I_SINGLE_FILE_CONFIG={settings.single_file_config!r} is not a diffusers folder "
                               "(no model_index.json)")
        class_name = json.loads((folder / "model_index.json").read_text()).get("_class_name", "")
        if class_name != pipeline_class.__name__:
            raise RequestError(f"{path.name} is a {pipeline_class.__name__} checkpoint but T2I_SINGLE_FILE_CONFIG "
                               f"holds a {class_name or 'unknown'} pipeline's configs")
        return folder
    # diffusers names the reference repo for a checkpoint from a few tensor names and shapes: the header has them
    shapes = {name: torch.empty(entry["shape"], device="meta") for name, entry in header.items()
              if name != "__metadata__"}
    repo = fetch_diffusers_config(shapes)["pretrained_model_name_or_path"]
    for local_files_only in (True, False):  # the local hub cache first; the hub only where it can be reached
        try:
            return Path(snapshot_download(repo, allow_patterns=CONFIG_FILES, local_files_only=local_files_only))
        except OSError:  # not cached / offline / unreachable
            continue
    raise RequestError(f"{path.name} is a single-file checkpoint and the configs of its parts were not found "
                       f"({repo} is not in the local hub cache, and the hub cannot be reached): set "
                       "T2I_SINGLE_FILE_CONFIG to a local diffusers folder of the same architecture, or save the "
                       "model as a diffusers folder")


def _load_single_file(path: Path, dtype, settings: Settings):
    """A single-file (A1111/Civitai layout) .safetensors checkpoint as a pipeline; offline with local configs."""
    if path.suffix != ".safetensors":
        raise RequestError(f"{path.name}: only .safetensors checkpoints are loaded (pickle files can run code)")
    if not path.is_file():
        raise RequestError(f"model file {str(path)!r} does not exist")
    header = read_safetensors_header(path, max_bytes=16 << 30)
    xl = any(k.startswith("conditioner.embedders.1") for k in header)
    pipeline_class = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
    config = _single_file_config(path, header, pipeline_class, settings)
    try:
        return pipeline_class.from_single_file(str(path), config=str(config), local_files_only=True, dtype=dtype)
    except NotImplementedError as exc:  # a weight the configs expect is absent: diffusers fails moving it off "meta"
        raise RequestError(f"{path.name} lacks weights that the configs in {config} expect (a partial checkpoint, "
                           "or configs of another architecture)") from exc
    except (OSError, ValueError, KeyError, RuntimeError, SingleFileComponentError) as exc:
        raise RequestError(f"could not load {path.name} with the configs in {config}: "
                           f"{str(exc).strip().splitlines()[0]}") from exc


def _load_pipeline(spec: str, settings: Settings) -> LoadedModel:
    """Load a model spec's pipeline (not yet on its device); raise RequestError with a user-facing reason."""
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    in_model_folder = model_folder_entries(settings).get(spec)
    path = EMBEDDED_MODEL_DIR if spec == "embedded" else in_model_folder or Path(spec).expanduser()
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
        pipe = _load_single_file(path, dtype, settings)
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
    family = "sdxl" if isinstance(pipe, StableDiffusionXLPipeline) else "sd"
    short_hash = _short_hash(source) if source is not None and source.exists() else ""
    name = "embedded" if spec == "embedded" else (path.name if path.exists() else spec)
    return LoadedModel(name=name, family=family, pipeline=pipe, short_hash=short_hash)


def _place(model: LoadedModel, settings: Settings) -> None:
    """Move a freshly loaded model to its device and apply the fast path planned for it."""
    device = resolve_device(settings.device)
    model.pipeline = model.pipeline.to(device)
    fast_path = plan_for(settings.speed, device, sum(p.numel() for p in model.pipeline.unet.parameters()))
    apply_fast_path(model.pipeline, fast_path)
    model.cache["fast_path"] = fast_path


class ModelCache:
    """Loaded models by spec, least recently used evicted beyond `settings.model_cache_size` models or
    `settings.model_cache_gb` GiB of weights."""

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
            # room is made before the weights go to the device, so a GPU never holds the evicted and the new at once
            self._make_room(spec, model.memory_bytes())
            _place(model, self.settings)
            self._models[spec] = model
            return model

    def _make_room(self, spec: str, incoming: int) -> None:
        """Evict least recently used models until one of `incoming` bytes fits both bounds."""
        bound = int(self.settings.model_cache_gb * GIB)
        while self._models:
            over_count = len(self._models) >= max(1, self.settings.model_cache_size)
            over_bytes = bound > 0 and sum(m.memory_bytes() for m in self._models.values()) + incoming > bound
            if not (over_count or over_bytes):
                break
            self._evict_oldest()
        if 0 < bound < incoming:
            log.warning("model %s holds %.2f GiB of weights, more than T2I_MODEL_CACHE_GB=%g; loading it alone",
                        spec, incoming / GIB, self.settings.model_cache_gb)

    def _evict_oldest(self) -> None:
        spec, evicted = self._models.popitem(last=False)
        with evicted.lock:  # let a job still running on it finish before its memory goes
            pass
        log.info("model cache: evicted %s (%.3f GiB)", spec, evicted.memory_bytes() / GIB)
        del evicted
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def loaded(self) -> list[str]:
        """Specs of the models now in memory, most recent last."""
        return list(self._models)

    def sizes(self) -> dict[str, int]:
        """Bytes of weights each loaded model holds, least recently used first."""
        return {spec: model.memory_bytes() for spec, model in self._models.items()}
