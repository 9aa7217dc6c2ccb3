"""Find, load and cache diffusion models of every family t2i runs (t2i/models/families.py): the embedded model,
diffusers folders, hub ids, single-file .safetensors checkpoints.

A model's family is told before its weights are read (a folder's model_index.json, a hub model's model_index.json,
a single file's tensor names), and an unknown pipeline is refused naming it. Loaded pipelines are kept in an LRU
cache bounded by count and by the bytes of their weights; the img2img and inpainting pipelines of a model are built
with `from_pipe`, so they share the already-loaded components instead of loading them again. Single-file
(A1111/Civitai) checkpoints take their component configs from a local diffusers folder or the local hub cache, so
they load offline; a file that holds only the denoiser (as Flux, Z-Image and Qwen-Image ship) takes the rest of
the pipeline from that folder.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import diffusers
import torch
from diffusers import GGUFQuantizationConfig
from diffusers.loaders.single_file_utils import (
    DIFFUSERS_DEFAULT_PIPELINE_PATHS, SingleFileComponentError, infer_diffusers_model_type,
)
from huggingface_hub import hf_hub_download, snapshot_download

from t2i.generation.fastpath import apply_fast_path, plan_for
from t2i.models.families import FAMILIES, Family, Variant, family_of_class, family_of_tensors
from t2i.models.file_hash import file_sha256
from t2i.models.access import HUB_ID, model_folder_entries
from t2i.request import RequestError
from t2i.models.file_checks import check_gguf_file, read_safetensors_header
from t2i.models.memory import apply_memory_policy, load_quantization_config, resident_bytes
from t2i.settings import EMBEDDED_MODEL_DIR, Settings, resolve_device, resolve_dtype

CONFIG_FILES = ["*.json", "**/*.json", "*.txt", "**/*.txt", "**/*.model"]  # a pipeline's configs, no weights
GIB = 1 << 30
# tensor-name prefixes of checkpoints that carry the whole pipeline (text encoders, VAE), not the denoiser alone
WHOLE_CHECKPOINT_PREFIXES = ("first_stage_model.", "text_encoders.", "cond_stage_model.", "conditioner.", "vae.")
log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A loaded model: its text-to-image pipeline, plus per-mode pipelines sharing its components."""

    name: str
    family: str  # a FAMILIES id: "sd" (1.x/2.x), "sdxl", "sd3", "flux1", ...
    pipeline: diffusers.DiffusionPipeline
    short_hash: str
    lock: threading.Lock = field(default_factory=threading.Lock)  # one run at a time per model
    cache: dict = field(default_factory=dict)  # per-model helpers built on first use (compel, previews)
    _mode_pipelines: dict = field(default_factory=dict)

    def __post_init__(self):
        # samplers are built from the model's own schedule; kept apart because each request swaps schedulers
        self.scheduler_config = dict(self.pipeline.scheduler.config)

    @property
    def family_spec(self) -> Family:
        """What the registry knows about this model's family."""
        return FAMILIES[self.family]

    @property
    def variant(self) -> Variant | None:
        """The family's variant this model is (Flux.1 dev or schnell), None where the family has none."""
        return self.family_spec.variant_of(self.pipeline)

    @property
    def distilled_cfg(self) -> float | None:
        """The default distilled guidance of this model, None when it has none (SD, SDXL, Flux.1 schnell...)."""
        variant = self.variant
        return variant.distilled_cfg if variant is not None else self.family_spec.distilled_cfg

    @property
    def denoiser(self) -> torch.nn.Module:
        """The denoising network: the UNet or the transformer."""
        return getattr(self.pipeline, self.family_spec.denoiser)

    @property
    def native_size(self) -> int:
        """The size the pipeline makes by default: its own default sample size, else the denoiser's config."""
        size = getattr(self.pipeline, "default_sample_size", None) or self.denoiser.config.get("sample_size")
        return int(size * self.pipeline.vae_scale_factor) if size else self.family_spec.native_size

    def pipeline_for(self, mode: str):
        """The pipeline for txt2img, img2img or inpaint, built once from the shared components; RequestError when
        the family has no pipeline for the mode."""
        if mode == "txt2img":
            return self.pipeline
        if mode not in self._mode_pipelines:
            class_name = self.family_spec.pipelines.get(mode)
            if class_name is None:
                raise RequestError(f"{self.family_spec.label} models have no {mode} pipeline in diffusers; "
                                   f"they run: {', '.join(self.family_spec.pipelines)}")
            self._mode_pipelines[mode] = getattr(diffusers, class_name).from_pipe(self.pipeline)
        return self._mode_pipelines[mode]

    def memory_bytes(self) -> int:
        """Bytes really resident (on every device, quantised storages as stored) of this model's pipelines and of
        the modules its helpers keep in `cache` (such as loaded ControlNets), each weight counted once: modules
        share weights (a Z-Image ControlNet borrows the transformer's embedders and refiners)."""
        modules = [m for pipe in (self.pipeline, *self._mode_pipelines.values()) for m in pipe.components.values()]
        for helper in self.cache.values():
            modules.extend(helper.values() if isinstance(helper, dict) else [helper])
        return sum(resident_bytes([module for module in modules if isinstance(module, torch.nn.Module)]).values())


def _short_hash(path: Path, family: Family) -> str:
    """First 10 hex digits of the SHA-256 of the weights, as A1111 shows as 'Model hash'."""
    if path.is_dir():
        candidates = sorted((path / family.denoiser).glob("*.safetensors")) or sorted(path.rglob("*.safetensors"))
        if not candidates:
            return ""
        path = candidates[0]
    return file_sha256(path)[:10]


def _folder_family(folder: Path, source: str) -> tuple[Family, str]:
    """The family and pipeline class name of a diffusers folder, from its model_index.json."""
    if not (folder / "model_index.json").is_file():
        raise RequestError(f"model folder {source!r} has no model_index.json (not a diffusers pipeline)")
    class_name = json.loads((folder / "model_index.json").read_text()).get("_class_name", "")
    return family_of_class(class_name, source), class_name


def _single_file_config(path: Path, header: dict, family: Family, settings: Settings) -> Path:
    """The local diffusers folder whose configs describe a single-file checkpoint's components."""
    if settings.single_file_config:
        folder = Path(settings.single_file_config).expanduser()
        if not (folder / "model_index.json").is_file():
            raise RequestError(f"T2I_SINGLE_FILE_CONFIG={settings.single_file_config!r} is not a diffusers folder "
                               "(no model_index.json)")
        class_name = json.loads((folder / "model_index.json").read_text()).get("_class_name", "")
        if family_of_class(class_name, str(folder)) is not family:
            raise RequestError(f"{path.name} is a {family.pipelines['txt2img']} checkpoint but T2I_SINGLE_FILE_CONFIG "
                               f"holds a {class_name or 'unknown'} pipeline's configs (another family)")
        return folder
    # diffusers names the reference repo for a checkpoint from a few tensor names and shapes: the header has them
    shapes = {name: torch.empty(entry["shape"], device="meta") for name, entry in header.items()
              if name != "__metadata__"}
    try:  # diffusers falls back to SD 1.5 for shapes it does not know: only a release of this family counts
        model_type = infer_diffusers_model_type(shapes)
    except (KeyError, ValueError, IndexError, AttributeError):
        model_type = None
    known = model_type in family.diffusers_model_types
    repo = DIFFUSERS_DEFAULT_PIPELINE_PATHS[model_type]["pretrained_model_name_or_path"] if known else None
    for local_files_only in (True, False) if repo else ():  # the local hub cache first; the hub only if reachable
        try:
            return Path(snapshot_download(repo, allow_patterns=CONFIG_FILES, local_files_only=local_files_only))
        except OSError:  # not cached / offline / unreachable
            continue
    where = f"{repo} is not in the local hub cache, and the hub cannot be reached" if repo else \
        f"diffusers knows no {family.label} release of this shape"
    raise RequestError(f"{path.name} is a single-file {family.label} checkpoint and the configs of its parts were "
                       f"not found ({where}): set T2I_SINGLE_FILE_CONFIG to a local diffusers folder of the same "
                       "architecture, or save the model as a diffusers folder")


def _load_single_file(path: Path, dtype, settings: Settings):
    """A single-file .safetensors checkpoint (A1111/Civitai layout, or a denoiser alone) as a pipeline, offline with
    local configs; returns (pipeline, family)."""
    if path.suffix != ".safetensors":
        raise RequestError(f"{path.name}: only .safetensors checkpoints are loaded (pickle files can run code)")
    if not path.is_file():
        raise RequestError(f"model file {str(path)!r} does not exist")
    header = read_safetensors_header(path, max_bytes=64 << 30)
    family = family_of_tensors([name for name in header if name != "__metadata__"], path.name)
    if not family.single_file:
        raise RequestError(f"{path.name} is a {family.label} checkpoint; diffusers loads no single files of "
                           "that family: use a diffusers folder")
    config = _single_file_config(path, header, family, settings)
    pipeline_class = getattr(diffusers, family.pipelines["txt2img"])
    # a file with only the denoiser's weights (as Flux and newer families ship) takes the rest from the folder
    denoiser_only = not any(name.startswith(WHOLE_CHECKPOINT_PREFIXES) for name in header)
    try:
        if family.denoiser == "unet" or not denoiser_only:
            return pipeline_class.from_single_file(str(path), config=str(config), local_files_only=True,
                                                   dtype=dtype), family
        denoiser_config = json.loads((config / family.denoiser / "config.json").read_text())
        denoiser = getattr(diffusers, denoiser_config["_class_name"]).from_single_file(
            str(path), config=str(config), subfolder=family.denoiser, local_files_only=True, torch_dtype=dtype)
        return pipeline_class.from_pretrained(config, **{family.denoiser: denoiser}, dtype=dtype,
                                              use_safetensors=True, local_files_only=True), family
    except NotImplementedError as exc:  # a weight the configs expect is absent: diffusers fails moving it off "meta"
        raise RequestError(f"{path.name} lacks weights that the configs in {config} expect (a partial checkpoint, "
                           "or configs of another architecture)") from exc
    except (OSError, ValueError, KeyError, RuntimeError, SingleFileComponentError) as exc:
        raise RequestError(f"could not load {path.name} with the configs in {config}: "
                           f"{str(exc).strip().splitlines()[0]}") from exc


def _load_gguf(path: Path, dtype, settings: Settings):
    """A GGUF file of a transformer family's denoiser (city96's layout), kept quantised by diffusers' GGUF quantiser,
    with the rest of the pipeline from the local configs folder; returns (pipeline, family)."""
    if not path.is_file():
        raise RequestError(f"model file {str(path)!r} does not exist")
    names = check_gguf_file(path, max_bytes=64 << 30)
    family = family_of_tensors(names, path.name)
    if family.denoiser != "transformer":
        raise RequestError(f"{path.name} is a {family.label} GGUF; t2i loads GGUF files of transformer families only")
    config = _single_file_config(path, {}, family, settings)
    denoiser_config = json.loads((config / family.denoiser / "config.json").read_text())
    try:
        denoiser = getattr(diffusers, denoiser_config["_class_name"]).from_single_file(
            str(path), config=str(config), subfolder=family.denoiser, local_files_only=True, torch_dtype=dtype,
            quantization_config=GGUFQuantizationConfig(compute_dtype=dtype))
        return getattr(diffusers, family.pipelines["txt2img"]).from_pretrained(
            config, **{family.denoiser: denoiser}, dtype=dtype, use_safetensors=True, local_files_only=True), family
    except (OSError, ValueError, KeyError, RuntimeError, NotImplementedError, SingleFileComponentError) as exc:
        raise RequestError(f"could not load {path.name} with the configs in {config}: "
                           f"{str(exc).strip().splitlines()[0]}") from exc


def _hub_family(spec: str) -> tuple[Family, str]:
    """The family of a hub model from its model_index.json, read before any weight is downloaded."""
    try:
        index = Path(hf_hub_download(spec, "model_index.json"))
    except Exception as exc:  # offline, no such repository, gated, network errors
        raise RequestError(f"could not load {spec!r} from the model hub (offline, or no such model): "
                           f"{type(exc).__name__}") from exc
    return _folder_family(index.parent, spec)


def _load_pipeline(spec: str, settings: Settings) -> LoadedModel:
    """Load a model spec's pipeline (not yet on its device); raise RequestError with a user-facing reason."""
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    in_model_folder = model_folder_entries(settings).get(spec)
    path = EMBEDDED_MODEL_DIR if spec == "embedded" else in_model_folder or Path(spec).expanduser()
    if path.is_dir():
        family, class_name = _folder_family(path, spec)
        # the family's text-to-image pipeline loads a folder saved from any of its pipelines
        pipeline_class = getattr(diffusers, class_name if class_name in family.also_loads else
                                 family.pipelines["txt2img"])
        pipe = pipeline_class.from_pretrained(path, dtype=dtype, use_safetensors=True,
                                              **_load_quantization(path / "model_index.json", settings, device))
        source = path
    elif path.suffix == ".gguf":
        pipe, family = _load_gguf(path, dtype, settings)
        source = path
    elif path.suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin"):
        pipe, family = _load_single_file(path, dtype, settings)
        source = path
    elif HUB_ID.match(spec):
        family, class_name = _hub_family(spec)
        pipeline_class = getattr(diffusers, class_name if class_name in family.also_loads else
                                 family.pipelines["txt2img"])
        try:
            pipe = pipeline_class.from_pretrained(spec, dtype=dtype, use_safetensors=True)
        except OSError as exc:
            raise RequestError(f"could not load {spec!r} from the model hub (offline, or no such model): "
                               f"{str(exc).splitlines()[0]}") from exc
        source = Path(getattr(pipe, family.denoiser).config._name_or_path)  # the hub cache folder
    else:
        raise RequestError(f"unknown model {spec!r}: give 'embedded', a diffusers folder, a .safetensors file "
                           "or a hub id (owner/name)")
    pipe.set_progress_bar_config(disable=True)
    short_hash = _short_hash(source, family) if source is not None and source.exists() else ""
    name = "embedded" if spec == "embedded" else (path.name if path.exists() else spec)
    return LoadedModel(name=name, family=family.id, pipeline=pipe, short_hash=short_hash)


def _load_quantization(model_index: Path, settings: Settings, device) -> dict:
    """from_pretrained's quantization_config for T2I_QUANTIZE=nf4, which bitsandbytes applies only while loading
    (the other modes quantise after loading, in apply_memory_policy)."""
    if settings.quantize != "nf4":
        return {}
    return {"quantization_config": load_quantization_config("nf4", json.loads(model_index.read_text()), device)}


def _place(model: LoadedModel, settings: Settings) -> None:
    """Quantise and place a freshly loaded model (T2I_QUANTIZE, T2I_OFFLOAD) and apply the fast path planned
    for it; a quantised or offloaded model runs the plain path (the fast path's casts and layouts assume plain
    weights on one device)."""
    device = resolve_device(settings.device)
    memory = apply_memory_policy(model.pipeline, settings, device)
    model.cache["memory"] = memory
    speed = settings.speed if (memory.quantize, memory.offload) == ("none", "none") else "quality"
    fast_path = plan_for(speed, device, sum(p.numel() for p in model.denoiser.parameters()),
                         model.family_spec.denoiser)
    if fast_path.skipped:
        log.info("model %s: %s", model.name, fast_path.skipped)
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
