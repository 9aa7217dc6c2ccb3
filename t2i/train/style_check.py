"""Before training: does the fine detail of a dataset (stripes, dots, checkers, thin lines) survive the base model?

A LoRA teaches the denoiser to draw in the VAE's latent space, so it can never draw what the VAE's own round trip
of a training image loses; and images are scaled to the training resolution first, where a pattern may shrink
below what the VAE can carry (measured on the embedded model, whose VAE downsamples 4x: stripes that repeat every
4 px at 64x64 come back solid, every 8 px they come back striped; see bench/results/texture_vae.json). A pattern the
VAE only half carries does not train either: 8 px checkers come back readable, but with less than half their fine
detail, and not even a full fine-tune of the embedded UNet learned to draw them.

`detail_kept` compares the fine detail (the image minus its blur) before and after the round trip;
`detail_check` turns the dataset's median into a note for the Train tab, shown before anything trains.
`texture_expectation` says, for the embedded model, what LoRAs of dots or outlines (which the VAE carries) drew
when they were trained and measured: less than stripes, and not what the user asks for.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from t2i.embedded.world import IMAGE_SIZE
from t2i.train.buckets import fit

DETAIL_SIGMA = 1.0  # px at the training resolution: what a blur of this width removes counts as fine detail
# below this median share of fine detail kept, a texture style will not train. From bench/results/texture_vae.json
# (embedded VAE, 24 renders a row): patterns it loses (read back 0% after the round trip) keep a median of 0.00-0.14;
# 8 px checkers keep 0.44 (88% still read back), yet a full UNet fine-tune drew them in 0% of 20 prompts
# (texture_diagnosis_full_checkered.json); 8 px dots keep 0.63, stripes 0.69, plain and outlined shapes 0.86-0.88.
# Between checkers and dots: datasets of 12 renders at 8 px have medians of 0.35-0.49 (checkers), 0.56-0.65 (dots),
# 0.62-0.74 (stripes), 0.59-0.89 (outlines; 10 draws each, texture_vae_datasets.json)
MIN_DETAIL_KEPT = 0.52


def fine_detail(image: Image.Image) -> np.ndarray:
    """The image minus its Gaussian blur (DETAIL_SIGMA), per channel, in 0-255 units."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    return pixels - ndimage.gaussian_filter(pixels, (DETAIL_SIGMA, DETAIL_SIGMA, 0))


def detail_kept(original: Image.Image, decoded: Image.Image) -> float:
    """Share (0..1) of `original`'s fine detail that `decoded` reproduces: 1 - residual energy / detail energy."""
    before, after = fine_detail(original), fine_detail(decoded)
    energy = float((before ** 2).sum())
    if energy == 0:  # a flat image has no detail to lose
        return 1.0
    return float(np.clip(1 - ((after - before) ** 2).sum() / energy, 0, 1))


@torch.no_grad()
def vae_round_trip(vae, images: list[Image.Image]) -> list[Image.Image]:
    """Images through the VAE's encoder (posterior mode) and decoder, one at a time."""
    decoded = []
    for image in images:
        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1)
        latents = vae.encode(pixels.permute(2, 0, 1)[None].to(vae.dtype)).latent_dist.mode()
        out = ((vae.decode(latents).sample[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        decoded.append(Image.fromarray(out.permute(1, 2, 0).numpy()))
    return decoded


@dataclass(frozen=True)
class DetailCheck:
    kept: list[float]  # per image, in dataset order
    note: str | None  # a warning for the Train tab, or None when the detail survives

    @property
    def median(self) -> float:
        return statistics.median(self.kept)


def detail_check(images: list[Image.Image], vae, resolution: int, model_name: str) -> DetailCheck:
    """How much fine detail the images keep at `resolution` through `vae`, and a note when too little survives."""
    scaled = [fit(image.convert("RGB"), (resolution, resolution)) for image in images]
    kept = [detail_kept(a, b) for a, b in zip(scaled, vae_round_trip(vae, scaled))]
    median = statistics.median(kept)
    note = None
    if median < MIN_DETAIL_KEPT:
        note = (f"fine detail (stripes, dots, checkers, thin lines) will not train: at the training size "
                f"({resolution} px) {model_name}'s VAE keeps only {median:.0%} of it (at least {MIN_DETAIL_KEPT:.0%} "
                f"is needed), so the LoRA cannot learn it; use images with coarser patterns, or a model with a larger "
                f"training size")
    return DetailCheck(kept, note)


@lru_cache(maxsize=1)
def _embedded_vae():
    from diffusers import AutoencoderKL

    from t2i.settings import EMBEDDED_MODEL_DIR

    return AutoencoderKL.from_pretrained(Path(EMBEDDED_MODEL_DIR) / "vae", torch_dtype=torch.float32).eval()


def embedded_detail_check(images: list[Image.Image]) -> DetailCheck:
    """`detail_check` against the embedded model (the default base model) at its native size."""
    vae = _embedded_vae()
    return detail_check(images, vae, vae.config.sample_size, "the embedded model")


# What "quick style" LoRAs of 8 px textures drew on the embedded model (12 renders each, trigger "zqx", read by
# t2i/eval/texture.py on 20 held-out prompts with the trigger, 0% without; bench/results/train_style_{dotted,
# outlined}_*.json, table: bench/texture_runs_table.py): the preset's share, and the best share of any change to it
# tried, with that change (its text names a repeat of the training with another seed, where there was one). 8 px
# stripes reached 80% (no note); 8 px checkers are flagged by the detail check. Copied from the files
# (tests/test_texture_measure.py checks the copy): re-measure when the preset changes.
TRAINED_SHARES = {
    "dotted": ("dots", 0.40, 0.50, "Min-SNR gamma 5"),
    "outlined": ("outlines", 0.35, 0.85, "Min-SNR gamma 5 with prior weight 0.5 and rank 32, alpha 32, once: trained "
                 "again with another seed it drew them in 55%"),
}
TARGET_SHARE = 0.8  # what 8 px stripes reach under the preset


def texture_expectation(images: list[Image.Image]) -> str | None:
    """For the embedded model: when most images show dots or outlines (as t2i/eval/texture.py reads them at the
    model's 64 px), a note with the share of images such a LoRA drew them in when measured; else None."""
    from t2i.eval.texture import read_texture  # scipy templates: only when a dataset is checked

    if not images:
        return None
    readings = Counter(read_texture(fit(image.convert("RGB"), (IMAGE_SIZE, IMAGE_SIZE))).texture for image in images)
    texture, count = readings.most_common(1)[0]
    if texture not in TRAINED_SHARES or count * 2 <= len(images):
        return None
    name, preset_share, best_share, best_setting = TRAINED_SHARES[texture]
    note = (f"these images show {name}: on the embedded model, LoRAs of 8 px {name} drew them in {preset_share:.0%} "
            f"of images with the trigger under the default preset, and in {best_share:.0%} with the best change "
            f"tried ({best_setting})")
    if preset_share < TARGET_SHARE:
        note += f"; 8 px stripes reach {TARGET_SHARE:.0%} under the preset: expect many images without the pattern"
    return note


def embedded_notes(images: list[Image.Image]) -> list[str]:
    """"Check images" on the embedded model: the detail warning, or, when the detail survives, what a LoRA of the
    dataset's dots or outlines drew when measured."""
    note = embedded_detail_check(images).note or texture_expectation(images)
    return [note] if note else []
