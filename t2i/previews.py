"""Cheap live previews: a linear map from latents to RGB, fitted once per model from its own VAE.

Decoding every step with the VAE would cost as much as sampling; a 4->3 linear map costs nothing.
The map is fitted (least squares) on random colour grids encoded by the model's VAE, so it
works for any SD-family VAE without hard-coded constants.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .models import LoadedModel


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


def latents_to_preview(model: LoadedModel, latents: torch.Tensor) -> list[Image.Image]:
    """Approximate RGB images for a batch of (scaled) latents, one per batch item."""
    if "latent_to_rgb" not in model.cache:
        model.cache["latent_to_rgb"] = _fit_latent_to_rgb(model)
    matrix = model.cache["latent_to_rgb"]
    flat = latents.detach().float().cpu().permute(0, 2, 3, 1)
    rgb = torch.cat([flat, torch.ones(*flat.shape[:3], 1)], dim=3) @ matrix
    array = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return [Image.fromarray(a).resize((a.shape[1] * 4, a.shape[0] * 4), Image.Resampling.NEAREST) for a in array]
