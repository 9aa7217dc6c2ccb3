"""ControlNet models by name: the shipped embedded one, folders in the ControlNet library, known hub ids.

A folder holds one diffusers ControlNet of any class t2i drives (plugins/controlnet/families.py): SD 1.x/2.x and
SDXL (ControlNetModel), Flux.1, SD3/3.5, Qwen-Image and Z-Image. Its config is read and its safetensors headers
checked before any weight loads; a ControlNet of another family, or one whose widths differ from the model's, is
refused naming both. A loaded ControlNet is kept on the LoadedModel it serves (`model.cache`), so it loads once
per model, in that model's device and dtype.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import diffusers

from t2i.models.access import HUB_ID
from t2i.models.families import FAMILIES
from t2i.models.file_checks import read_safetensors_header
from t2i.models.file_hash import file_sha256
from t2i.request import RequestError
from t2i.settings import EMBEDDED_MODEL_DIR

from .families import KINDS, inner_width

EMBEDDED_NAME = "embedded-edges"
EMBEDDED_DIR = EMBEDDED_MODEL_DIR.parent / "controlnet"  # shipped inside the t2i package, beside the model
# well-known ControlNets on the hub, offered in the model list; they load only when the hub can be reached
HUB_MODELS = (
    "lllyasviel/control_v11p_sd15_canny", "lllyasviel/control_v11p_sd15_lineart",
    "lllyasviel/control_v11p_sd15_scribble", "lllyasviel/control_v11p_sd15_softedge",
    "lllyasviel/control_v11f1p_sd15_depth", "lllyasviel/control_v11p_sd15_openpose",
    "lllyasviel/control_v11e_sd15_shuffle", "lllyasviel/control_v11p_sd15_mlsd",
    "lllyasviel/control_v11p_sd15_normalbae",
    "diffusers/controlnet-canny-sdxl-1.0", "diffusers/controlnet-depth-sdxl-1.0",
)
CACHE_KEY = "controlnets"
MAX_LOADED = 4  # per model; the least recently used ControlNet is dropped beyond this
MAX_WEIGHTS_BYTES = 64 << 30  # a header claiming more than this is refused before loading


def is_controlnet_folder(path: Path) -> bool:
    """A diffusers ControlNet folder: config.json naming a ControlNet class t2i drives, and safetensors weights."""
    config = path / "config.json"
    if not config.is_file() or not any(path.glob("*.safetensors")):
        return False
    try:
        return json.loads(config.read_text()).get("_class_name") in KINDS
    except (OSError, ValueError):
        return False


def library(folders) -> dict[str, str]:
    """Model names -> where they load from: the embedded ControlNet, library sub-folders, hub ids."""
    found = {EMBEDDED_NAME: str(EMBEDDED_DIR)} if is_controlnet_folder(EMBEDDED_DIR) else {}
    for folder in folders:
        for path in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else ():
            if path.name not in found and is_controlnet_folder(path):
                found[path.name] = str(path)
    return {**found, **{hub_id: hub_id for hub_id in HUB_MODELS if hub_id not in found}}


def short_hash(source: str) -> str:
    """First 10 hex digits of the weights' SHA-256 for local folders (A1111 shows it); '' for hub ids."""
    path = Path(source)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if not files:
        return ""
    return file_sha256(files[0])[:10]


def families_taking(model_class: str) -> str:
    """The labels of the families whose models take ControlNets of `model_class`, for messages."""
    return " or ".join(f.label for f in FAMILIES.values() if f.controlnet_model == model_class) or "no family"


def _read_config(name: str, source: str) -> dict:
    """The ControlNet's config (a local folder's config.json after its weights' headers are checked, or the hub's)."""
    try:
        if Path(source).is_dir():
            for weights in sorted(Path(source).glob("*.safetensors")):
                read_safetensors_header(weights, MAX_WEIGHTS_BYTES)
        return dict(diffusers.ControlNetModel.load_config(source))
    except (OSError, ValueError) as exc:
        where = "the model hub (offline, or no such model)" if HUB_ID.match(source) and not Path(source).exists() \
            else source
        raise RequestError(f"could not load ControlNet {name!r} from {where}: {str(exc).splitlines()[0][:200]}") from exc


def _unet_problem(config: dict, model) -> str | None:
    unet = model.pipeline.unet.config
    if config.get("addition_embed_type") != unet.addition_embed_type:
        families = ("SDXL", "an SD 1.x/2.x") if config.get("addition_embed_type") else ("SD 1.x/2.x", "an SDXL")
        return f"it is for {families[0]} models and this is {families[1]} model"
    scale = 2 ** (len(config["conditioning_embedding_out_channels"]) - 1)
    if scale != model.pipeline.vae_scale_factor:
        return f"it maps control images down {scale}x, this model's latents are {model.pipeline.vae_scale_factor}x smaller"
    return None


def fit_problem(name: str, config: dict, model) -> str | None:
    """Why the ControlNet with `config` cannot serve `model` (another family, other widths), or None."""
    family = model.family_spec
    model_class = config.get("_class_name", "")
    if model_class != family.controlnet_model:
        return (f"ControlNet {name!r} is a {families_taking(model_class)} ControlNet ({model_class}) and model "
                f"{model.name!r} is {family.label}, which takes {family.controlnet_model} ControlNets")
    denoiser = getattr(model.pipeline, family.denoiser).config
    problem = _unet_problem(config, model) if family.denoiser == "unet" else None
    for key, denoiser_key in KINDS[model_class].shared_config:
        ours, theirs = config.get(key), denoiser.get(denoiser_key)
        if problem is None and _plain(ours) != _plain(theirs):
            problem = f"its {key} is {_plain(ours)}, this model's is {_plain(theirs)}"
    if problem is None and inner_width(config) != inner_width(denoiser):
        problem = f"its inner width is {inner_width(config)}, this model's is {inner_width(denoiser)}"
    return f"ControlNet {name!r} does not fit model {model.name!r}: {problem}" if problem else None


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def load_controlnet(model, name: str, source: str):
    """The ControlNet `name` for `model` (call with the model lock held), loaded on first use after its checks."""
    loaded: OrderedDict = model.cache.setdefault(CACHE_KEY, OrderedDict())
    if name in loaded:
        loaded.move_to_end(name)
        return loaded[name]
    config = _read_config(name, source)
    problem = fit_problem(name, config, model)
    if problem:
        raise RequestError(problem)
    denoiser = getattr(model.pipeline, model.family_spec.denoiser)
    model_class = getattr(diffusers, config["_class_name"])
    try:
        controlnet = model_class.from_pretrained(source, dtype=denoiser.dtype, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise RequestError(f"could not load ControlNet {name!r} from {source}: "
                           f"{str(exc).splitlines()[0][:200]}") from exc
    loaded[name] = controlnet.to(denoiser.device).eval()
    while len(loaded) > MAX_LOADED:
        loaded.popitem(last=False)
    return loaded[name]
