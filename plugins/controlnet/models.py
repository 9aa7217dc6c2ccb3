"""ControlNet models by name: the shipped embedded one, folders in the ControlNet library, known hub ids.

A loaded ControlNet is kept on the LoadedModel it serves (`model.cache`), so it loads once per model,
in that model's device and dtype; a ControlNet made for another architecture is refused before use.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

from t2i.models.file_hash import file_sha256
from t2i.models.access import HUB_ID
from t2i.request import RequestError
from t2i.settings import EMBEDDED_MODEL_DIR

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


def is_controlnet_folder(path: Path) -> bool:
    """A diffusers ControlNetModel folder: config.json naming the class, and safetensors weights."""
    config = path / "config.json"
    if not config.is_file() or not any(path.glob("*.safetensors")):
        return False
    try:
        return json.loads(config.read_text()).get("_class_name") == "ControlNetModel"
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


def _compatibility_problem(controlnet, model) -> str | None:
    unet = model.pipeline.unet.config
    config = controlnet.config
    if config.addition_embed_type != unet.addition_embed_type:
        families = ("SDXL", "an SD 1.x/2.x") if config.addition_embed_type else ("SD 1.x/2.x", "an SDXL")
        return f"it is for {families[0]} models and this is {families[1]} model"
    if config.cross_attention_dim != unet.cross_attention_dim:
        return f"its text width is {config.cross_attention_dim}, this model's is {unet.cross_attention_dim}"
    if tuple(config.block_out_channels) != tuple(unet.block_out_channels):
        return f"its blocks are {tuple(config.block_out_channels)}, this model's are {tuple(unet.block_out_channels)}"
    scale = 2 ** (len(config.conditioning_embedding_out_channels) - 1)
    if scale != model.pipeline.vae_scale_factor:
        return f"it maps control images down {scale}x, this model's latents are {model.pipeline.vae_scale_factor}x smaller"
    return None


def load_controlnet(model, name: str, source: str):
    """The ControlNetModel `name` for `model` (call with the model lock held), loaded on first use."""
    from diffusers import ControlNetModel

    loaded: OrderedDict = model.cache.setdefault(CACHE_KEY, OrderedDict())
    if name in loaded:
        loaded.move_to_end(name)
        return loaded[name]
    unet = model.pipeline.unet
    try:
        controlnet = ControlNetModel.from_pretrained(source, dtype=unet.dtype, use_safetensors=True)
    except (OSError, ValueError) as exc:
        where = "the model hub (offline, or no such model)" if HUB_ID.match(source) and not Path(source).exists() \
            else source
        raise RequestError(f"could not load ControlNet {name!r} from {where}: {str(exc).splitlines()[0][:200]}") from exc
    problem = _compatibility_problem(controlnet, model)
    if problem:
        raise RequestError(f"ControlNet {name!r} does not fit model {model.name!r}: {problem}")
    loaded[name] = controlnet.to(unet.device).eval()
    while len(loaded) > MAX_LOADED:
        loaded.popitem(last=False)
    return loaded[name]
