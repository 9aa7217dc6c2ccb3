"""diffusers' StableDiffusionSafetyChecker (CLIP concept embeddings) as an image checker, when its weights exist.

It knows sexual concepts only; its concept thresholds are part of its weights, so it has no policy thresholds.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from PIL import Image
from diffusers.image_processor import VaeImageProcessor

from t2i.plugins import ImageChecker, Verdict

log = logging.getLogger(__name__)


class SDSafetyChecker(ImageChecker):
    """Flags an image that the Stable Diffusion safety checker reports as having an NSFW concept."""

    name = "sd_safety_checker"
    label = "Stable Diffusion safety checker"

    def __init__(self, model, feature_extractor):
        self.model = model.eval()
        self.feature_extractor = feature_extractor

    @torch.inference_mode()
    def check_image(self, image: Image.Image) -> Verdict:
        """Run the checker on one image; its has-NSFW-concept answer is the verdict."""
        rgb = image.convert("RGB")
        clip_input = self.feature_extractor(images=[rgb], return_tensors="pt").pixel_values
        _, has_nsfw = self.model(clip_input=clip_input, images=VaeImageProcessor.pil_to_numpy(rgb))
        flagged = bool(has_nsfw[0])
        return Verdict(flagged, "NSFW concept" if flagged else "", {"nsfw_concept": float(flagged)})


def load_sd_checker(spec: str) -> SDSafetyChecker | None:
    """The checker from a local folder or the local hub cache; None (with a logged note) when not found."""
    if not spec:
        return None
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    try:
        # never downloads: an operator fetches the ~1.2 GB weights once, on purpose (see README)
        local = {"local_files_only": True}
        model = StableDiffusionSafetyChecker.from_pretrained(spec, **local)
        extractor = CLIPImageProcessor.from_pretrained(spec, **local)
    except (OSError, ValueError) as exc:
        where = "folder" if Path(spec).exists() else "hub id (not in the local cache)"
        log.info("Stable Diffusion safety checker skipped: %s %s could not be loaded (%s)", where, spec,
                 type(exc).__name__)
        return None
    return SDSafetyChecker(model, extractor)
