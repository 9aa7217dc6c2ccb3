"""Live previews during sampling, by one of two methods (as A1111's "Full" and "Approx cheap"):

- full: the model's own VAE decodes the current latents. Faithful, and cheap when the VAE is small (the
  embedded model's decodes a 64x64 image in milliseconds), but for SD-size VAEs it costs about a step.
- approx: a linear map from latents to RGB, fitted once per model (least squares) on random colour grids
  encoded by the model's VAE, so it works for any VAE (4, 16 or 32 latent channels) without hard-coded
  constants. It costs nothing, and is only roughly right: for the embedded VAE its mean colour is off by ~50 of 255.

Sampled latents are first brought back to the VAE's own latent space, as the family's pipeline does before it
decodes (LAYOUTS, named by `Family.latent_layout`): unpacked from 2x2 tokens where the family packs them (Flux,
Chroma, Qwen-Image, Flux.2), and un-normalised (scale, shift, per-channel mean and std, Flux.2's batch norm).
Both methods then work on the same VAE latents.

`auto` picks full for VAEs under FULL_PREVIEW_MAX_PARAMS parameters and approx otherwise.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from t2i.models.cache import LoadedModel
from t2i.settings import PREVIEW_METHODS

FULL_PREVIEW_MAX_PARAMS = 5_000_000  # the embedded VAE has ~1 M; SD 1.5's has 84 M


def _unpack(latents: torch.Tensor, width: int, height: int, factor: int) -> torch.Tensor:
    """(batch, tokens, channels x 4) -> (batch, channels, h, w): the 2x2 packing of Flux, Chroma and Qwen-Image."""
    batch, _, packed = latents.shape
    h, w = 2 * (height // (factor * 2)), 2 * (width // (factor * 2))
    latents = latents.view(batch, h // 2, w // 2, packed // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return latents.reshape(batch, packed // 4, h, w)


def _scale(pipe, latents, width, height):
    return latents / pipe.vae.config.scaling_factor


def _shift_scale(pipe, latents, width, height):
    if latents.dim() == 3:
        latents = _unpack(latents, width, height, pipe.vae_scale_factor)
    return latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor


def _mean_std(pipe, latents, width, height):
    latents = _unpack(latents, width, height, pipe.vae_scale_factor)
    config = pipe.vae.config
    mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1).to(latents)
    std = torch.tensor(config.latents_std).view(1, -1, 1, 1).to(latents)
    return latents * std + mean


def _flux2(pipe, latents, width, height):
    # Flux.2 packs 2x2-patchified latents row by row, normalised by the VAE's batch norm
    batch, _, channels = latents.shape
    h, w = height // (pipe.vae_scale_factor * 2), width // (pipe.vae_scale_factor * 2)
    latents = latents.reshape(batch, h, w, channels).permute(0, 3, 1, 2)
    bn = pipe.vae.bn
    latents = latents * torch.sqrt(bn.running_var.view(1, -1, 1, 1) + pipe.vae.config.batch_norm_eps).to(latents) \
        + bn.running_mean.view(1, -1, 1, 1).to(latents)
    latents = latents.reshape(batch, channels // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return latents.reshape(batch, channels // 4, h * 2, w * 2)


# Family.latent_layout -> sampled latents to the VAE's latents (batch, channels, h, w)
LAYOUTS = {"scale": _scale, "shift_scale": _shift_scale, "mean_std": _mean_std, "flux2": _flux2}


def _has_frames(vae) -> bool:
    """Qwen-Image's VAE is a video VAE: it takes (batch, channels, frames, h, w)."""
    return type(vae).__name__ == "AutoencoderKLQwenImage"


@torch.no_grad()
def _fit_latent_to_rgb(model: LoadedModel) -> torch.Tensor:
    vae = model.pipeline.vae
    factor = model.pipeline.vae_scale_factor
    rng = np.random.default_rng(0)
    # 4x4 grids of random colours, so each latent pixel is fitted against the colour it covers
    grids = torch.from_numpy(rng.uniform(-1, 1, size=(16, 3, 4, 4)).astype(np.float32))
    images = torch.nn.functional.interpolate(grids, size=(16 * factor, 16 * factor), mode="nearest")
    param = next(vae.parameters())
    pixels = images.to(param.device, param.dtype)
    if _has_frames(vae):
        latents = vae.encode(pixels.unsqueeze(2)).latent_dist.mode()[:, :, 0].float().cpu()
    else:
        latents = vae.encode(pixels).latent_dist.mode().float().cpu()
    targets = torch.nn.functional.avg_pool2d(images, factor)
    features = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    design = torch.cat([features, torch.ones(len(features), 1)], dim=1)
    return torch.linalg.lstsq(design, targets.permute(0, 2, 3, 1).reshape(-1, 3)).solution  # (channels + 1) x 3


def preview_method(model: LoadedModel, setting: str) -> str:
    """The method `setting` (auto, full or approx) means for this model."""
    if setting not in PREVIEW_METHODS:
        raise ValueError(f"T2I_PREVIEW_METHOD must be one of {', '.join(PREVIEW_METHODS)}, not {setting!r}")
    if setting != "auto":
        return setting
    small = sum(p.numel() for p in model.pipeline.vae.parameters()) < FULL_PREVIEW_MAX_PARAMS
    return "full" if small else "approx"


def latents_to_preview(model: LoadedModel, latents: torch.Tensor, method: str = "approx", width: int = 0,
                       height: int = 0) -> list[Image.Image]:
    """RGB previews for a batch of sampled latents, one per batch item, by `method` ("full" or "approx");
    `width` and `height` (the image's) are needed to unpack packed latents."""
    layout = LAYOUTS[model.family_spec.latent_layout]
    latents = layout(model.pipeline, latents.detach().float(), width, height)
    if method == "full":
        return _decode_with_vae(model, latents)
    if "latent_to_rgb" not in model.cache:
        model.cache["latent_to_rgb"] = _fit_latent_to_rgb(model)
    matrix = model.cache["latent_to_rgb"]
    flat = latents.cpu().permute(0, 2, 3, 1)
    rgb = torch.cat([flat, torch.ones(*flat.shape[:3], 1)], dim=3) @ matrix
    array = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return [Image.fromarray(a).resize((a.shape[1] * 4, a.shape[0] * 4), Image.Resampling.NEAREST) for a in array]


@torch.no_grad()
def _decode_with_vae(model: LoadedModel, latents: torch.Tensor) -> list[Image.Image]:
    vae = model.pipeline.vae
    param = next(vae.parameters())
    latents = latents.to(param.device, param.dtype)
    if _has_frames(vae):
        decoded = vae.decode(latents.unsqueeze(2)).sample[:, :, 0]
    else:
        decoded = vae.decode(latents).sample
    array = ((decoded.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in array]
