"""What each kind of ControlNet takes, as data: one entry per diffusers ControlNet model class.

The model families say which ControlNet class and which ControlNet pipelines diffusers has for them
(t2i/models/families.py `controlnet_model`, `controlnet_pipelines`); this table adds what t2i's run path can
drive: how the pipelines name the control arguments, whether several units combine, whether the guidance
window exists, which of the model's config values a ControlNet must share, and why a mode is refused where
diffusers' pipeline takes other inputs than the run path passes (measured with diffusers 0.42.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ControlNetKind:
    """One diffusers ControlNet class and how its family's ControlNet pipelines take it."""

    model_class: str
    multi_class: str | None  # the class that combines several units; None: one unit only
    window: bool  # the pipelines take control_guidance_start/end
    shared_config: tuple[tuple[str, str], ...]  # (ControlNet config key, denoiser config key) that must match
    refused_modes: dict[str, str] = field(default_factory=dict)  # mode -> why the run path cannot drive it
    txt2img_image_arg: str = "control_image"  # SD's txt2img pipelines call the control map `image`


_INPAINT_CONTROLNET = ("diffusers' {pipeline} takes the masked picture as the control image (an inpainting "
                       "ControlNet) and no init image or strength, so it does not serve t2i's inpaint mode")

KINDS = {kind.model_class: kind for kind in (
    ControlNetKind("ControlNetModel", "MultiControlNetModel", True,
                   (("cross_attention_dim", "cross_attention_dim"), ("addition_embed_type", "addition_embed_type"),
                    ("block_out_channels", "block_out_channels")),
                   txt2img_image_arg="image"),
    ControlNetKind("FluxControlNetModel", "FluxMultiControlNetModel", True,
                   (("in_channels", "in_channels"), ("joint_attention_dim", "joint_attention_dim"),
                    ("pooled_projection_dim", "pooled_projection_dim"), ("axes_dims_rope", "axes_dims_rope")),
                   {mode: f"diffusers' {pipeline} takes no true CFG (true_cfg_scale, negative prompt), which t2i "
                          "passes to every Flux.1 call" for mode, pipeline in (
                        ("img2img", "FluxControlNetImg2ImgPipeline"), ("inpaint", "FluxControlNetInpaintPipeline"))}),
    ControlNetKind("SD3ControlNetModel", "SD3MultiControlNetModel", True,
                   (("in_channels", "in_channels"), ("patch_size", "patch_size"),
                    ("joint_attention_dim", "joint_attention_dim"),
                    ("caption_projection_dim", "caption_projection_dim"),
                    ("pooled_projection_dim", "pooled_projection_dim")),
                   {"inpaint": _INPAINT_CONTROLNET.format(pipeline="StableDiffusion3ControlNetInpaintingPipeline")}),
    ControlNetKind("QwenImageControlNetModel", "QwenImageMultiControlNetModel", True,
                   (("in_channels", "in_channels"), ("joint_attention_dim", "joint_attention_dim"),
                    ("axes_dims_rope", "axes_dims_rope")),
                   {"inpaint": _INPAINT_CONTROLNET.format(pipeline="QwenImageControlNetInpaintPipeline")}),
    ControlNetKind("ZImageControlNetModel", None, False,
                   (("dim", "dim"), ("n_heads", "n_heads"), ("all_patch_size", "all_patch_size"),
                    ("all_f_patch_size", "all_f_patch_size")),
                   {"inpaint": "diffusers' ZImageControlNetInpaintPipeline takes no strength, which t2i's inpaint "
                               "mode passes"}),
)}


def inner_width(config) -> int:
    """The width of the hidden states a ControlNet adds to (heads x head size, or Z-Image's `dim`)."""
    if isinstance(config.get("dim"), int):
        return config["dim"]
    heads, head_size = config.get("num_attention_heads"), config.get("attention_head_dim")
    if isinstance(heads, int) and isinstance(head_size, int) and "block_out_channels" not in config:
        return heads * head_size
    return 0  # UNet ControlNets: their block widths are compared instead
