"""Which VAE "Check images" round-trips a dataset through (t2i/train/style_check.py): the chosen base model's own, at
its training size, when its diffusers folder is here (the model folder, a local path, or a hub model already in the
local cache); only its VAE is loaded, not the rest of the model. A base model whose VAE is not here without a
download (a single-file checkpoint, a hub id not in the cache) is checked with the embedded model's VAE, and the note
says so and what that means.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch
from PIL import Image

from t2i.models.access import check_server_model, model_folder_entries
from t2i.models.families import family_of_class
from t2i.request import RequestError
from t2i.settings import Settings
from t2i.train.style_check import detail_check, embedded_detail_check, embedded_notes

# a Flux.1 transformer's config names no sample size; diffusers' Flux pipelines default to 128 latents (1024 px)
FLUX_LATENT_SIZE = 128


def base_model_folder(base_model: str, settings: Settings) -> Path | None:
    """The diffusers folder of `base_model` with a VAE in it, found without a download; None when there is none."""
    try:
        check_server_model(base_model, settings)
    except RequestError:
        return None
    folder = model_folder_entries(settings).get(base_model) or Path(base_model).expanduser()
    if not folder.is_dir():
        from huggingface_hub import try_to_load_from_cache

        index = try_to_load_from_cache(base_model, "model_index.json")  # a hub model already in the local cache
        folder = Path(index).parent if isinstance(index, str) else None
    if folder is None or not (folder / "model_index.json").is_file() or not (folder / "vae" / "config.json").is_file():
        return None
    return folder


def native_size(folder: Path, vae_config: dict) -> int:
    """The size a diffusers folder's model trains at by default (what the loaded pipeline's native size is): its
    denoiser's sample size in latents times the VAE's downscaling."""
    family = family_of_class(json.loads((folder / "model_index.json").read_text()).get("_class_name", ""), str(folder))
    denoiser = folder / family.denoiser / "config.json"
    sample_size = json.loads(denoiser.read_text()).get("sample_size") if denoiser.is_file() else None
    if not isinstance(sample_size, int):
        sample_size = FLUX_LATENT_SIZE
    return sample_size * 2 ** (len(vae_config["block_out_channels"]) - 1)


@lru_cache(maxsize=2)
def _folder_vae(folder: str, stamp: float):
    from diffusers import AutoencoderKL

    # float32 on the CPU, as the embedded check runs: the check compares pixels, it does not train
    return AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=torch.float32,
                                         local_files_only=True).eval()


def detail_notes(images: list[Image.Image], base_model: str, settings: Settings, resolution: int = 0) -> list[str]:
    """The fine-detail notes on a dataset for training a LoRA on `base_model` at `resolution` (0: the model's native
    size): the detail warning, if any, and a note when the embedded VAE had to stand in for the base model's."""
    if not images:
        return []
    base_model = (base_model or "").strip() or settings.default_model
    if base_model == "embedded":
        return embedded_notes(images)
    folder = base_model_folder(base_model, settings)
    if folder is not None:
        try:
            vae = _folder_vae(str(folder), (folder / "vae" / "config.json").stat().st_mtime)
        except (OSError, ValueError):  # weights missing from a partial cache: as if there were no folder
            folder = None
    if folder is None:
        stand_in = embedded_detail_check(images)
        return [note for note in (stand_in.note,) if note] + [
            f"fine detail was checked with the embedded model's VAE at its size, not {base_model!r}'s: that VAE is "
            f"not here without a download. {base_model!r} trains at its own size through its own VAE, which usually "
            "keeps more detail, so this check may warn about detail that would train"]
    size = resolution or native_size(folder, dict(vae.config))
    return [note for note in (detail_check(images, vae, size, repr(base_model)).note,) if note]


def file_detail_notes(image_files: list[str], base_model: str, settings: Settings, resolution: int = 0) -> list[str]:
    """`detail_notes` on a checked upload's saved image files (the Train tab's "Check images")."""
    images = []
    for path in image_files:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return detail_notes(images, base_model, settings, resolution)
