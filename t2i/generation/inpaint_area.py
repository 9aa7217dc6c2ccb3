"""Masked content and inpaint area: what the masked area starts from, and which part of the image is repainted.

Masked content (A1111's names): `original` keeps the init image's pixels under the mask; `fill` first paints the
masked area from the colours around it (OpenCV's inpainting, Telea's method); `latent noise` and `latent nothing`
also fill, then replace the masked area's image latents with noise or with zeros before sampling starts (SD 1.x/2.x,
SDXL and SD3 inpainting; other families refuse them). At denoising strength 1 diffusers starts the masked area from
pure noise whatever the choice (a 4-channel model ignores the image there), so the choices matter below 1.

Inpaint area `Only masked` repaints the mask's bounding box plus `inpaint_padding` pixels, widened to the request's
aspect ratio, at the request's full size, and pastes it back through the (blurred) mask: diffusers' own
`padding_mask_crop`. The result keeps the init image's size, and pixels outside the mask are the init image's.
"""

from __future__ import annotations

import contextlib
import inspect

import cv2
import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image, ImageFilter

from t2i.request import INPAINT_AREAS, MASKED_CONTENT, RequestError

ORIGINAL, LATENT_CONTENT = MASKED_CONTENT[0], MASKED_CONTENT[2:]  # original; latent noise, latent nothing
ONLY_MASKED = INPAINT_AREAS[1]
FILL_RADIUS = 5  # pixels around each filled pixel that OpenCV's inpainting looks at


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """`image` with every pixel the mask touches (above 0) painted from the surrounding colours; others unchanged."""
    pixels = np.asarray(image.convert("RGB"))
    holes = (np.asarray(mask.convert("L")) > 0).astype(np.uint8)
    if not holes.any() or holes.all():  # nothing to fill, or nothing to fill it from
        return image.convert("RGB")
    return Image.fromarray(cv2.inpaint(pixels, holes, FILL_RADIUS, cv2.INPAINT_TELEA))


def inpaint_inputs(request, image: Image.Image, mask: Image.Image, size: tuple[int, int]) -> dict:
    """The inpainting pipeline's image, strength, mask (blurred) and, for `Only masked`, the crop padding.

    `mask` is white where to repaint (already inverted for "inpaint not masked"). The whole picture is resized to
    `size`; with `Only masked` the image and mask keep the init image's size and the pipeline crops them.
    """
    if request.inpaint_area == ONLY_MASKED:
        image, mask = image.convert("RGB"), mask.convert("L").resize(image.size, Image.Resampling.NEAREST)
        if mask.getbbox() is None:
            raise RequestError("inpaint area 'Only masked' needs a mask with something to repaint; this one is empty")
    else:
        image = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
        mask = mask.convert("L").resize(size, Image.Resampling.NEAREST)
    if request.mask_blur:
        mask = mask.filter(ImageFilter.GaussianBlur(request.mask_blur))
    if request.masked_content != ORIGINAL:
        image = fill_masked(image, mask)
    inputs = {"image": image, "strength": request.strength, "mask_image": mask}
    if request.inpaint_area == ONLY_MASKED:
        inputs["padding_mask_crop"] = request.inpaint_padding
    return inputs


def around_inpaint_call(member):
    """The context of an inpainting member's pipeline call: the checks its pipeline must pass, and for latent
    noise / latent nothing the masked area's image latents replaced while the call prepares its latents."""
    request, pipe = member.prepared.request, member.pipe
    if "mask_image" not in member.inputs:
        return contextlib.nullcontext()
    call_parameters = inspect.signature(pipe.__call__).parameters
    if "padding_mask_crop" in member.inputs and "padding_mask_crop" not in call_parameters:
        raise RequestError(f"inpaint area 'Only masked' is not available with {type(pipe).__name__}")
    if request.masked_content not in LATENT_CONTENT:
        return contextlib.nullcontext()
    needed = {"generator", "timestep", "is_strength_max", "return_noise", "return_image_latents"}
    noising = hasattr(pipe.scheduler, "add_noise") or hasattr(pipe.scheduler, "scale_noise")
    if not needed <= set(inspect.signature(pipe.prepare_latents).parameters) or not noising:
        raise RequestError(f"masked content {request.masked_content!r} is not available with {type(pipe).__name__} "
                           "(SD 1.x/2.x, SDXL and SD3 inpainting have it)")
    latent_mask = _processed_mask(pipe, member.inputs, member.prepared.width, member.prepared.height)
    return _replacing_masked_latents(pipe, latent_mask, request.masked_content)


def _processed_mask(pipe, inputs: dict, width: int, height: int) -> Image.Image:
    """The mask as the pipeline sees it: cropped like the image for `Only masked`, at the processing size."""
    mask = inputs["mask_image"]
    if "padding_mask_crop" in inputs:
        mask = mask.crop(pipe.mask_processor.get_crop_region(mask, width, height, pad=inputs["padding_mask_crop"]))
    return mask.resize((width, height), Image.Resampling.BILINEAR)


def _noised(scheduler, start: torch.Tensor, noise: torch.Tensor, timestep) -> torch.Tensor:
    """`start` noised to `timestep` as the pipeline would: add_noise (SD, SDXL) or a flow-matching scale_noise (SD3)."""
    if hasattr(scheduler, "scale_noise"):
        return scheduler.scale_noise(start, timestep, noise)
    return scheduler.add_noise(start, noise, timestep)


@contextlib.contextmanager
def _replacing_masked_latents(pipe, mask: Image.Image, content: str):
    """While inside, `pipe.prepare_latents` starts the masked area from noise or zeros instead of the image's
    latents (the unmasked area, and what the sampler blends back there, stay the image's)."""
    original = pipe.prepare_latents
    signature = inspect.signature(original)

    def prepare_latents(*args, **kwargs):
        arguments = signature.bind(*args, **kwargs)
        arguments.apply_defaults()
        asked = dict(arguments.arguments)
        latents, noise, image_latents = original(**{**asked, "return_noise": True, "return_image_latents": True})
        # masked where the mask, at latent size, rounds to 1 (A1111 rounds the latent mask too)
        small = mask.resize(tuple(image_latents.shape[-1:-3:-1]), Image.Resampling.BILINEAR)
        masked = torch.from_numpy(np.round(np.asarray(small, np.float32) / 255)).to(image_latents)
        if content == LATENT_CONTENT[0]:  # latent noise
            filler = randn_tensor(image_latents.shape, generator=asked["generator"], device=image_latents.device,
                                  dtype=image_latents.dtype)
        else:
            filler = torch.zeros_like(image_latents)
        start = image_latents * (1 - masked) + filler * masked
        if not asked.get("add_noise", True):  # SDXL's denoising_start: the latents are the image's as they are
            latents = start
        elif not asked["is_strength_max"]:  # at strength 1 the latents are pure noise and the image plays no part
            latents = _noised(pipe.scheduler, start, noise, asked["timestep"])
        outputs = (latents,)
        if asked["return_noise"]:
            outputs += (noise,)
        if asked["return_image_latents"]:
            outputs += (image_latents,)
        return outputs

    pipe.prepare_latents = prepare_latents
    try:
        yield
    finally:
        del pipe.prepare_latents  # the class's own method shows through again
