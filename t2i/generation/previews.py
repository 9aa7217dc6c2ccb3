"""Live previews during sampling, by one of two methods (as A1111's "Full" and "Approx cheap"):

- full: the model's own VAE decodes the current latents. Faithful, and cheap when the VAE is small (the
  embedded model's decodes a 64x64 image in milliseconds), but for SD-size VAEs it costs about a step.
- approx: a linear map from latents to RGB, fitted once per model (least squares) on random colour grids
  encoded by the model's VAE, so it works for any SD-family VAE without hard-coded constants. It costs
  nothing, and is only roughly right: for the embedded VAE its mean colour is off by ~50 of 255.

`auto` picks full for VAEs under FULL_PREVIEW_MAX_PARAMS parameters and approx otherwise.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from t2i.models.cache import LoadedModel
from t2i.settings import PREVIEW_METHODS

FULL_PREVIEW_MAX_PARAMS = 5_000_000  # the embedded VAE has ~1 M; SD 1.5's has 84 M


@torch.no_grad()
def _fit_latent_to_rgb(model: LoadedModel) -> torch.Tensor:
    vae = model.pipeline.vae
    factor = model.pipeline.vae_scale_factor
    rng = np.random.default_rng(0)
    # 4x4 grids of random colours, so each latent pixel is fitted against the colour it covers
    grids = torch.from_numpy(rng.uniform(-1, 1, size=(16, 3, 4, 4)).astype(np.float32))
    images = torch.nn.functional.interpolate(grids, size=(16 * factor, 16 * factor), mode="nearest")
    param = next(vae.parameters())
    latents = vae.encode(images.to(param.device, param.dtype)).latent_dist.mode().float().cpu()
    latents = latents * vae.config.scaling_factor
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


def latents_to_preview(model: LoadedModel, latents: torch.Tensor, method: str = "approx") -> list[Image.Image]:
    """RGB previews for a batch of (scaled) latents, one per batch item, by `method` ("full" or "approx")."""
    if method == "full":
        return _decode_with_vae(model, latents)
    if "latent_to_rgb" not in model.cache:
        model.cache["latent_to_rgb"] = _fit_latent_to_rgb(model)
    matrix = model.cache["latent_to_rgb"]
    flat = latents.detach().float().cpu().permute(0, 2, 3, 1)
    rgb = torch.cat([flat, torch.ones(*flat.shape[:3], 1)], dim=3) @ matrix
    array = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return [Image.fromarray(a).resize((a.shape[1] * 4, a.shape[0] * 4), Image.Resampling.NEAREST) for a in array]


@torch.no_grad()
def _decode_with_vae(model: LoadedModel, latents: torch.Tensor) -> list[Image.Image]:
    vae = model.pipeline.vae
    param = next(vae.parameters())
    decoded = vae.decode(latents.detach().to(param.device, param.dtype) / vae.config.scaling_factor).sample
    array = ((decoded.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in array]
