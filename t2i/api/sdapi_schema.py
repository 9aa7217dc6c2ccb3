"""The AUTOMATIC1111 txt2img / img2img bodies as clients send them, and what t2i does with each field.

Every A1111 field is named here, in one of three groups:
- mapped onto GenerationRequest (prompt, sizes, sampler, seed, batch, init image, mask, hires fix, the model, clip
  skip and VAE overrides, ...);
- ignored, and said so in the response's `info` (`t2i_ignored`): fields that only tune A1111's own samplers or
  say where A1111 saves files (t2i's API keeps no files), and which clients send with every request;
- refused unless at their "off" value (hires fix, face restoration, tiling, scripts, refiner, ...): a feature
  t2i does not have is a 422 naming the field, never silently dropped.
A field A1111 does not have is refused too (422 naming it); SillyTavern's own `url` and `auth`, which it sends
along, are ignored.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

# feature fields accepted only at one of their "off" values, with why
OFF_ONLY: dict[str, tuple[tuple, str]] = {
    "restore_faces": ((False, None), "face restoration is not available in t2i"),
    "tiling": ((False, None), "tiling is not available in t2i"),
    "subseed_strength": ((0, 0.0, None), "variation seeds are not available in t2i"),
    "seed_resize_from_h": ((-1, 0, None), "seed resizing is not available in t2i"),
    "seed_resize_from_w": ((-1, 0, None), "seed resizing is not available in t2i"),
    "script_name": ((None, ""), "scripts are not available in t2i (GET /sdapi/v1/scripts lists none)"),
    "script_args": (([], None), "scripts are not available in t2i"),
    "alwayson_scripts": (({}, None), "scripts and extensions (ControlNet, ADetailer, ...) are not available in "
                                     "t2i's A1111 API"),
    "refiner_checkpoint": ((None, "", "None"), "a refiner is not available in t2i"),
    "disable_extra_networks": ((False, None), "<lora:...> tags are always applied in t2i"),
    "firstpass_image": ((None, ""), "a first-pass image for hires fix is not available in t2i"),
    "hr_checkpoint_name": ((None, "", "Use same checkpoint"), "hires fix runs on the request's own model in t2i"),
    "hr_scheduler": ((None, "", "Use same scheduler", "Automatic"), "hires fix uses the request's scheduler in t2i"),
    "infotext": ((None, ""), "send the fields themselves; POST /sdapi/v1/png-info reads parameters text"),
    "resize_mode": ((0, None), "t2i resizes the init image to the output size (resize_mode 0) only"),
    "latent_mask": ((None, ""), "a latent mask is not available in t2i"),
    "include_init_images": ((False, None), "t2i does not return the init images"),
    "initial_noise_multiplier": ((1, 1.0, None), "an initial noise multiplier is not available in t2i"),
}
# override_settings keys t2i maps onto the request (sd_model_checkpoint picks the model)
OVERRIDES_MAPPED = ("sd_model_checkpoint", "CLIP_stop_at_last_layers", "sd_vae")
# override_settings keys accepted at their "off" values
OVERRIDES_OFF_ONLY: dict[str, tuple[tuple, str]] = {
    "forge_additional_modules": (([], None), "additional modules are not available in t2i"),
}
# img2img's inpainting options, mapped when a mask is sent; A1111's inpainting_fill indexes MASKED_CONTENT_BY_INDEX
MASK_FIELDS = ("mask_blur", "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding")
MASKED_CONTENT_BY_INDEX = ("fill", "original", "latent noise", "latent nothing")
# A1111's sd_vae values for "the checkpoint's own"
OWN_VAE = (None, "", "Automatic", "None")
# hires fix fields, used when enable_hr is true (ignored, and said so, when it is false)
HIRES_FIELDS = ("hr_scale", "hr_resize_x", "hr_resize_y", "hr_second_pass_steps", "hr_upscaler", "hr_prompt",
                "hr_negative_prompt", "hr_sampler_name")
# accepted and ignored, with why (reported back in info's t2i_ignored)
IGNORED: dict[str, str] = {
    **{name: "tunes A1111's own samplers; t2i's samplers use their defaults" for name in (
        "eta", "s_min_uncond", "s_churn", "s_tmax", "s_tmin", "s_noise", "image_cfg_scale", "refiner_switch_at")},
    "subseed": "variation seeds are not available in t2i",
    **{name: "t2i's API keeps no files on the server" for name in (
        "save_images", "do_not_save_samples", "do_not_save_grid")},
    "override_settings_restore_afterwards": "overrides in t2i apply to their own request only",
    **{name: "A1111's older hires fix fields; t2i takes hr_scale or hr_resize_x/y" for name in (
        "firstphase_width", "firstphase_height")},
    **{name: "hires fix's second pass uses cfg_scale and the request's model in t2i" for name in (
        "hr_cfg", "hr_distilled_cfg", "hr_additional_modules")},
    **{name: "t2i blurs the mask by mask_blur, the same both ways, and never rounds it" for name in (
        "mask_blur_x", "mask_blur_y", "mask_round")},
    # img2img maps these when it has a mask (Img2ImgBody)
    **{name: "inpainting options need an img2img mask" for name in MASK_FIELDS},
    "comments": "kept by A1111 in its own infotext only",
    "force_task_id": "t2i tracks jobs by caller (see /sdapi/v1/progress)",
    "url": "SillyTavern's own connection field",
    "auth": "SillyTavern's own connection field",
}


class _MappedFields(BaseModel):
    """The fields t2i maps onto GenerationRequest. Omitted ones take t2i's own defaults (GenerationRequest)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    prompt: str = ""
    negative_prompt: str | None = None
    styles: list[str] | None = None
    seed: int = -1
    steps: int | None = None
    cfg_scale: float | None = None
    distilled_cfg_scale: float | None = None  # Forge's field: the guidance distilled into Flux.1 dev and Flux.2
    width: int | None = None
    height: int | None = None
    sampler_name: str | None = None
    sampler_index: str | None = None  # the older name of sampler_name
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    denoising_strength: float | None = None  # img2img's strength, or txt2img's hires fix strength
    enable_hr: bool = False
    hr_scale: float | None = None
    hr_resize_x: int | None = None
    hr_resize_y: int | None = None
    hr_second_pass_steps: int | None = None
    hr_upscaler: str | None = None
    hr_prompt: str | None = None
    hr_negative_prompt: str | None = None
    hr_sampler_name: str | None = None
    override_settings: dict[str, Any] | None = None
    send_images: bool = True

    def unsupported(self) -> list[str]:
        """Why each field set to a feature t2i lacks is refused (empty when none is)."""
        problems = [f"{name}={_show(getattr(self, name))}: {why}" for name, (off, why) in OFF_ONLY.items()
                    if name in self.model_fields_set and not _one_of(getattr(self, name), off)]
        overrides = self.override_settings or {}
        for name, value in overrides.items():
            if name in OVERRIDES_MAPPED:
                continue
            if name not in OVERRIDES_OFF_ONLY:
                problems.append(f"override_settings.{name}: not available in t2i (only "
                                f"{', '.join(OVERRIDES_MAPPED)} are)")
            elif not _one_of(value, OVERRIDES_OFF_ONLY[name][0]):
                problems.append(f"override_settings.{name}={_show(value)}: {OVERRIDES_OFF_ONLY[name][1]}")
        return problems

    def ignored(self) -> dict[str, str]:
        """The ignored fields this body set, with why."""
        ignored = {name: why for name, why in IGNORED.items() if name in self.model_fields_set}
        if not self.enable_hr:
            ignored |= {name: "hires fix is off (enable_hr is false)" for name in HIRES_FIELDS
                        if name in self.model_fields_set}
        return ignored


# POST /sdapi/v1/txt2img: the mapped fields, plus those of OFF_ONLY and IGNORED as any JSON value (see unsupported())
Txt2ImgBody = create_model("Txt2ImgBody", __base__=_MappedFields,
                           **{name: (Any, None) for name in (*OFF_ONLY, *IGNORED)})


class Img2ImgBody(Txt2ImgBody):
    """POST /sdapi/v1/img2img: txt2img's fields plus the init image, mask and its options."""

    init_images: list[str]
    mask: str | None = None
    inpainting_mask_invert: int = 0  # 1: repaint where the mask is black
    # with a mask (omitted: t2i's defaults): mask blur, masked content (0 fill, 1 original, 2 latent noise,
    # 3 latent nothing), inpaint area "Only masked" (true or 1) and its padding
    mask_blur: int | None = None
    inpainting_fill: int | None = None
    inpaint_full_res: bool | int | None = None
    inpaint_full_res_padding: int | None = None

    def ignored(self) -> dict[str, str]:
        """The ignored fields this body set, with why: the inpainting options only without a mask."""
        ignored = super().ignored()
        if self.mask:
            for name in MASK_FIELDS:
                ignored.pop(name, None)
        return ignored


def explain(error: ValidationError) -> str:
    """One line per problem, naming the field: unknown fields together, then wrong types and values."""
    unknown = [".".join(map(str, problem["loc"])) for problem in error.errors() if problem["type"] == "extra_forbidden"]
    lines = [f"unknown field(s) for this A1111 route: {', '.join(unknown)}"] if unknown else []
    for problem in error.errors(include_url=False):
        if problem["type"] != "extra_forbidden":
            field = ".".join(map(str, problem["loc"])) or "body"
            lines.append(f"{field}: {problem['msg']}")
    return "; ".join(lines)


def _one_of(value, allowed: tuple) -> bool:
    """`value` equals one of `allowed` with a matching kind (False is not 0, 1 is not True)."""
    return any(type(value) is type(item) and value == item for item in allowed) or (
        isinstance(value, float) and math.isfinite(value) and value.is_integer()
        and any(type(item) is int and value == item for item in allowed))


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
