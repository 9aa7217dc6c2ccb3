"""Tiny random ControlNets for the tiny pipelines of `t2i.models.tiny`, one per family diffusers has ControlNets for.

Each is made the way the real ones start training: from the family's own denoiser (`from_unet`,
`from_transformer`, or for Z-Image a control branch beside the transformer's layers), one block deep. diffusers
zero-initialises a ControlNet's output projections so that an untrained one changes nothing; here those are
filled with seeded random values, so the ControlNet has a measurable effect on the image.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    ControlNetModel, FluxControlNetModel, QwenImageControlNetModel, SD3ControlNetModel, ZImageControlNetModel,
)

from t2i.models.tiny.pipelines import build_pipeline

OUTPUT_SCALE = 0.3  # spread of the otherwise zero output projections


def _sd(pipe):
    # four conditioning levels: the control image is brought down 8x, as the tiny VAE brings images to latents
    return ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(8, 8, 16, 16))


def _sd3(pipe):
    return SD3ControlNetModel.from_transformer(pipe.transformer, num_layers=1, num_extra_conditioning_channels=0)


def _flux1(pipe):
    config = pipe.transformer.config
    return FluxControlNetModel.from_transformer(
        pipe.transformer, num_layers=1, num_single_layers=1, attention_head_dim=config.attention_head_dim,
        num_attention_heads=config.num_attention_heads)


def _qwenimage(pipe):
    config = pipe.transformer.config
    return QwenImageControlNetModel.from_transformer(
        pipe.transformer, num_layers=1, attention_head_dim=config.attention_head_dim,
        num_attention_heads=config.num_attention_heads)


def _zimage(pipe):
    # the control branch only; ZImageControlNetPipeline joins it to the transformer's embedders when it is built
    config = pipe.transformer.config
    return ZImageControlNetModel(
        control_layers_places=[0], control_refiner_layers_places=[0], control_in_dim=config.in_channels,
        all_patch_size=tuple(config.all_patch_size), all_f_patch_size=tuple(config.all_f_patch_size),
        dim=config.dim, n_refiner_layers=config.n_refiner_layers, n_heads=config.n_heads,
        n_kv_heads=config.n_kv_heads, qk_norm=config.qk_norm)


BUILDERS = {"sd": _sd, "sdxl": _sd, "sd3": _sd3, "flux1": _flux1, "qwenimage": _qwenimage, "zimage": _zimage}
CONTROLNET_FAMILIES = tuple(BUILDERS)


def build_controlnet(family: str, seed: int = 0, model_seed: int = 0, variant: str = ""):
    """A tiny random ControlNet for `build_pipeline(family, variant, model_seed)`; same seeds, same weights."""
    if family not in BUILDERS:
        raise ValueError(f"no tiny ControlNet for {family!r}: diffusers has ControlNets for "
                         f"{', '.join(CONTROLNET_FAMILIES)}")
    controlnet = BUILDERS[family](build_pipeline(family, variant, model_seed))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sorted(controlnet.named_parameters()):
            if name.endswith("weight") and not parameter.any():  # a zero-initialised projection
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * OUTPUT_SCALE)
    return controlnet.eval()


def save_tiny_controlnet(family: str, folder: Path, seed: int = 0, model_seed: int = 0, variant: str = "") -> Path:
    """Write a tiny `family` ControlNet as a diffusers folder (config.json and safetensors); returns the folder."""
    folder = Path(folder)
    build_controlnet(family, seed, model_seed, variant).save_pretrained(folder, safe_serialization=True)
    return folder
