"""Hires fix and clip skip in A1111's parameters text, written and read back as A1111 writes them.

`Denoising strength: 0.5, Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent`, or `Hires resize: 1024x768`
for a target size; `Hires prompt`, `Hires negative prompt` and `Hires sampler` (with A1111 >= 1.8's `Hires schedule
type`) when the second pass has its own; `Clip skip: 2`; for inpainting `Mask blur: 4`, `Mask mode: Inpaint not
masked`, `Masked content: fill` (`latent noise`, `latent nothing`; nothing for `original`, as A1111) and `Inpaint
area: Only masked, Masked area padding: 32`. The VAE (`VAE`, `VAE hash`) and `TI hashes` come with
the run's described fields (t2i/generation/run_extras.py); `VAE` is read back into the VAE box.
"""

from __future__ import annotations

import re

from t2i.generation.samplers import SAMPLERS
from t2i.models.upscalers import BUILTIN
from t2i.request import INPAINT_AREAS, MASKED_CONTENT, REQUEST_FIELDS, RequestError

HIRES_KEYS = ("Hires upscale", "Hires resize", "Hires steps", "Hires upscaler")
_RESIZE = re.compile(r"^(\d+)x(\d+)$")
ORIGINAL = REQUEST_FIELDS["masked_content"].default  # the init image's own pixels: A1111 writes no Masked content
UNSUPPORTED_HIRES = ("Hires CFG Scale", "Hires checkpoint", "Hires Module 1")


def hires_enabled(params: dict) -> bool:
    return params.get("hires_scale", 1) != 1 or bool(params.get("hires_width")) or bool(params.get("hires_height"))


def infotext_fields(params: dict) -> list[tuple[str, object]]:
    """The `Key: value` pairs of clip skip and hires fix for one image's recipe (none when both are off)."""
    fields: list[tuple[str, object]] = []
    if params.get("clip_skip", 1) != 1:
        fields.append(("Clip skip", params["clip_skip"]))
    if params.get("mode") == "inpaint" and params.get("mask_blur"):  # A1111 writes these for inpainting only
        fields.append(("Mask blur", params["mask_blur"]))
    if params.get("mode") == "inpaint" and params.get("inpainting_mask_invert"):
        fields.append(("Mask mode", "Inpaint not masked"))
    if params.get("mode") == "inpaint" and params.get("masked_content", ORIGINAL) != ORIGINAL:
        fields.append(("Masked content", params["masked_content"]))  # A1111 writes nothing for the original
    if params.get("mode") == "inpaint" and params.get("inpaint_area") == "Only masked":
        fields += [("Inpaint area", "Only masked"), ("Masked area padding", params["inpaint_padding"])]
    if not hires_enabled(params):
        return fields
    fields.append(("Denoising strength", params["hires_denoise"]))
    if params.get("hires_width") or params.get("hires_height"):
        fields.append(("Hires resize", f"{params.get('hires_width', 0)}x{params.get('hires_height', 0)}"))
    else:
        fields.append(("Hires upscale", f"{params['hires_scale']:g}"))
    if params.get("hires_steps"):
        fields.append(("Hires steps", params["hires_steps"]))
    fields.append(("Hires upscaler", params["hires_upscaler"]))
    for key, name in (("Hires prompt", "hires_prompt"), ("Hires negative prompt", "hires_negative_prompt"),
                      ("Hires sampler", "hires_sampler")):
        if params.get(name):
            fields.append((key, params[name]))
    return fields


def read_fields(extra: dict, form: dict, notes: list[str], sampler_name) -> None:
    """Move clip skip, VAE and hires fix fields from `extra` (A1111 text, by key) into `form`; `sampler_name`
    joins a sampler and a schedule type as the reader does for the main sampler."""
    if "Clip skip" in extra:
        value = extra.pop("Clip skip")
        if value in ("1", "2"):
            form["clip_skip"] = int(value)
        else:
            extra["Clip skip"] = value
            notes.append(f"clip skip {value} is not available here (1 or 2, compel's last or penultimate layer)")
    if "Mask blur" in extra:
        form["mask_blur"] = round(_number("Mask blur", extra.pop("Mask blur"), float))
    if extra.get("Mask mode") in ("Inpaint masked", "Inpaint not masked"):
        form["inpainting_mask_invert"] = int(extra.pop("Mask mode") == "Inpaint not masked")
    if extra.get("Masked content") in MASKED_CONTENT:
        form["masked_content"] = extra.pop("Masked content")
    if extra.get("Inpaint area") in INPAINT_AREAS:
        form["inpaint_area"] = extra.pop("Inpaint area")
    if "Masked area padding" in extra:
        form["inpaint_padding"] = _number("Masked area padding", extra.pop("Masked area padding"), int)
    if extra.get("VAE"):
        form["vae"] = extra.pop("VAE")
    if not any(key in extra for key in HIRES_KEYS):
        return
    if "Denoising strength" in extra:  # with hires fix it is the hires pass's strength
        form["hires_denoise"] = _number("Denoising strength", extra.pop("Denoising strength"), float)
    if "Hires upscale" in extra:
        form["hires_scale"] = _number("Hires upscale", extra.pop("Hires upscale"), float)
    if "Hires resize" in extra:
        size = _RESIZE.match(extra.pop("Hires resize"))
        if size is None:
            raise RequestError(f"Hires resize must look like 1024x768; got {extra.get('Hires resize')!r}")
        form["hires_width"], form["hires_height"] = int(size.group(1)), int(size.group(2))
    if "Hires steps" in extra:
        form["hires_steps"] = _number("Hires steps", extra.pop("Hires steps"), int)
    if "Hires upscaler" in extra:
        form["hires_upscaler"] = extra.pop("Hires upscaler")
        if form["hires_upscaler"] not in BUILTIN:
            notes.append(f"hires upscaler {form['hires_upscaler']!r} is a model upscaler: it runs when a file of "
                         "that name is in the upscalers folder (T2I_UPSCALER_DIR)")
    for key, name in (("Hires prompt", "hires_prompt"), ("Hires negative prompt", "hires_negative_prompt")):
        if key in extra:
            form[name] = extra.pop(key)
    if "Hires sampler" in extra:
        sampler = sampler_name(extra.pop("Hires sampler"), extra.pop("Hires schedule type", ""))
        if sampler in SAMPLERS:
            form["hires_sampler"] = sampler
        elif sampler != "Use same sampler":
            notes.append(f"hires sampler {sampler!r} is not available here; the second pass uses the sampler")
    for key in UNSUPPORTED_HIRES:
        if key in extra:
            notes.append(f"{key} is not available here; the second pass uses the first pass's")


def _number(key: str, value: str, kind: type):
    try:
        return kind(value)
    except ValueError:
        raise RequestError(f"{key} must be a number; got {value!r}") from None
