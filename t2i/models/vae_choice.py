"""VAE choice: decode (and encode) with a VAE from the VAE folder instead of the model's own (Automatic).

A VAE is a `.safetensors` file (A1111/LDM keys such as `decoder.up.0...`, or diffusers keys) or a diffusers
folder. It must fit the model: the same latent channels (checked from the file's header before any tensor is
read), the same architecture (the weights load strictly into the model's own VAE layout), and, for a folder that
declares them, the same latent scaling and shift. Loaded VAEs are kept per model (the last two), and a run swaps
its VAE into the pipelines it uses and puts the model's own back afterwards, under the model lock.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from pathlib import Path

from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
from safetensors.torch import load_file

from t2i.models.file_checks import read_safetensors_header
from t2i.models.file_library import FileLibrary
from t2i.request import REQUEST_FIELDS, RequestError
from t2i.settings import Settings

AUTOMATIC = REQUEST_FIELDS["vae"].default  # the model's own VAE
MAX_BYTES = 4 << 30
KEEP_PER_MODEL = 2
CACHE_KEY = "vae_choice"  # model.cache[...]: {sha256: AutoencoderKL}, counted in the model's memory
PREFIXES = ("first_stage_model.", "vae.")  # VAE keys inside a whole checkpoint, or a prefixed VAE file
LATENT_CONFIG = ("scaling_factor", "shift_factor")


class VaeLibrary:
    """The VAE folder, by file (or folder) name, as A1111 records it in `VAE:`."""

    def __init__(self, settings: Settings):
        self.files = FileLibrary("VAE", settings.vae_dir, keep_suffix=True, folders=True, offered=(AUTOMATIC,))

    def names(self) -> list[str]:
        """The VAE box's choices: Automatic, then the folder's VAEs."""
        return [AUTOMATIC, *self.files.names()]

    def describe(self, name: str) -> dict[str, str]:
        """A1111's `VAE hash` (10 hex digits) and `VAE` for a chosen VAE; nothing for Automatic."""
        if name == AUTOMATIC:
            return {}
        return {"VAE hash": self.files.sha256(self.files.path(name))[:10], "VAE": name}

    def load(self, model, name: str) -> AutoencoderKL | None:
        """The VAE called `name`, checked against `model` and loaded on its device (None: the model's own)."""
        if name == AUTOMATIC:
            return None
        path = self.files.path(name)
        own = getattr(model.pipeline, "vae", None)
        if not isinstance(own, AutoencoderKL):
            raise RequestError(f"a VAE choice needs a model whose VAE is an AutoencoderKL; {model.name} has "
                               f"{type(own).__name__}")
        sha = self.files.sha256(path)
        loaded: OrderedDict = model.cache.setdefault(CACHE_KEY, OrderedDict())
        if sha not in loaded:
            vae = _load_folder(name, path, own) if path.is_dir() else _load_file(name, path, own)
            loaded[sha] = vae.to(device=own.device, dtype=own.dtype).eval()
            while len(loaded) > KEEP_PER_MODEL:
                loaded.popitem(last=False)
        loaded.move_to_end(sha)
        return loaded[sha]


@contextlib.contextmanager
def using_vae(pipes, vae: AutoencoderKL | None):
    """Swap `vae` into each pipeline for the duration, then restore each one's own (nothing for None)."""
    if vae is None:
        yield
        return
    pipes = list({id(pipe): pipe for pipe in pipes}.values())
    own = [pipe.vae for pipe in pipes]
    try:
        for pipe in pipes:
            pipe.vae = vae
        yield
    finally:
        for pipe, original in zip(pipes, own):
            pipe.vae = original


def _latent_channels(header: dict) -> int | None:
    for prefix in ("", *PREFIXES):
        entry = header.get(f"{prefix}decoder.conv_in.weight")
        if entry is not None and len(entry["shape"]) == 4:
            return entry["shape"][1]
    return None


def _check_channels(name: str, channels: int | None, own: AutoencoderKL) -> None:
    expected = own.config.latent_channels
    if channels is None:
        raise RequestError(f"VAE {name!r} has no decoder.conv_in weight: not a VAE (or a whole checkpoint)")
    if channels != expected:
        raise RequestError(f"VAE {name!r} has {channels} latent channels; this model's latents have {expected} "
                           "(a VAE of another model family)")


def _load_file(name: str, path: Path, own: AutoencoderKL) -> AutoencoderKL:
    header = read_safetensors_header(path, MAX_BYTES)
    if any(key.startswith("model.diffusion_model.") for key in header):
        raise RequestError(f"VAE {name!r} is a whole checkpoint, not a VAE: put it in the model folder")
    _check_channels(name, _latent_channels(header), own)
    state = load_file(str(path))
    for prefix in PREFIXES:
        state = {key.removeprefix(prefix): value for key, value in state.items()}
    if any(key.startswith("decoder.up.") for key in state):  # A1111/LDM layout
        state = convert_ldm_vae_checkpoint(state, dict(own.config))
    vae = AutoencoderKL.from_config(own.config)
    try:
        vae.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise RequestError(f"VAE {name!r} does not fit this model's VAE layout: "
                           f"{str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else exc}") from exc
    return vae


def _load_folder(name: str, path: Path, own: AutoencoderKL) -> AutoencoderKL:
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise RequestError(f"VAE folder {name!r} holds no .safetensors weights")
    _check_channels(name, _latent_channels(read_safetensors_header(weights[0], MAX_BYTES)), own)
    try:
        vae = AutoencoderKL.from_pretrained(path, use_safetensors=True, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise RequestError(f"VAE folder {name!r} could not be loaded: {str(exc).splitlines()[0]}") from exc
    for key in LATENT_CONFIG:
        theirs, ours = vae.config.get(key), own.config.get(key)
        if theirs is not None and ours is not None and abs(theirs - ours) > 1e-6:
            raise RequestError(f"VAE {name!r} scales latents with {key} {theirs}; this model's latents use {ours} "
                               "(a VAE of another model family)")
    return vae
