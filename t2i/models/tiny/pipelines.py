"""The family table of tiny pipelines: build one, or save it as a diffusers folder."""

from __future__ import annotations

from pathlib import Path

import diffusers

from t2i.models.tiny import components

# family id -> (diffusers pipeline class name, component builder, variants; the first is the default)
FAMILIES = {
    "sd": ("StableDiffusionPipeline", components.sd_components, ("",)),
    "sdxl": ("StableDiffusionXLPipeline", components.sdxl_components, ("",)),
    "sd3": ("StableDiffusion3Pipeline", components.sd3_components, ("",)),
    "flux1": ("FluxPipeline", components.flux1_components, ("dev", "schnell")),
    "flux2": ("Flux2Pipeline", components.flux2_components, ("",)),
    "zimage": ("ZImagePipeline", components.zimage_components, ("",)),
    "qwenimage": ("QwenImagePipeline", components.qwenimage_components, ("",)),
    "chroma": ("ChromaPipeline", components.chroma_components, ("",)),
}
FAMILY_IDS = tuple(FAMILIES)


def _family(family: str, variant: str) -> tuple[type, callable, str]:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; tiny models exist for {', '.join(FAMILY_IDS)}")
    class_name, build, variants = FAMILIES[family]
    variant = variant or variants[0]
    if variant not in variants:
        raise ValueError(f"{family} has variants {', '.join(map(repr, variants))}, not {variant!r}")
    return getattr(diffusers, class_name), build, variant


def build_pipeline(family: str, variant: str = "", seed: int = 0):
    """A tiny random pipeline of `family` on CPU in float32; the same seed gives the same weights."""
    pipeline_class, build, variant = _family(family, variant)
    pipe = pipeline_class(**build(seed, variant))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_model(family: str, folder: Path, variant: str = "", seed: int = 0) -> Path:
    """Write a tiny `family` pipeline as a diffusers folder (safetensors only); returns the folder."""
    folder = Path(folder)
    build_pipeline(family, variant, seed).save_pretrained(folder, safe_serialization=True)
    return folder
