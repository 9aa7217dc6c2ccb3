"""The model families t2i runs, as data: how each is recognised, its pipelines, defaults, samplers, prompt encoding,
previews, LoRA and ControlNet support.

Every layer asks the family instead of assuming a UNet: the cache loads with `Family.pipelines`, the run path passes
guidance under the family's argument names, the sampler table is filtered by `Family.samplers`, prompts are encoded
by `Family.prompt_encoding`, and so on. A family is one entry in FAMILIES; nothing else branches on family ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from t2i.generation.samplers import FLOW_SCHEDULERS, SAMPLERS
from t2i.request import REQUEST_FIELDS, RequestError

UNET_SAMPLERS = tuple(SAMPLERS)
FLUX_DISTILLED_CFG = REQUEST_FIELDS["distilled_cfg"].default  # Forge's default for Flux.1 dev is the request's
FLOW_SAMPLERS = tuple(FLOW_SCHEDULERS)


@dataclass(frozen=True)
class Variant:
    """A checkpoint of a family with its own defaults, told apart by one config value of one component."""

    name: str
    component: str  # e.g. "transformer"
    config_key: str  # e.g. "guidance_embeds"
    config_value: object
    steps: int
    cfg: float
    distilled_cfg: float | None  # None: this variant has no distilled guidance


@dataclass(frozen=True)
class Family:
    """One model family: what t2i needs to know to load, prompt, sample, preview and adapt it."""

    id: str
    label: str
    pipelines: dict[str, str]  # mode (txt2img, img2img, inpaint) -> diffusers pipeline class name
    also_loads: tuple[str, ...]  # other pipeline class names a saved folder of this family may carry
    single_file_markers: tuple[str, ...]  # tensor names (without "model.diffusion_model.") that only it has; a
    # marker ending in "." matches every name it starts
    native_size: int
    steps: int
    cfg: float
    denoiser: str  # the pipeline attribute of the denoising network: "unet" or "transformer"
    latent_channels: int
    packed_latents: bool  # the pipeline hands callbacks 2x2-packed latents (batch, tokens, channels x 4)
    latent_layout: str  # how sampled latents map back to the VAE's: see t2i/generation/previews.py LAYOUTS
    samplers: tuple[str, ...]
    prompt_encoding: str  # "compel-sd", "compel-sdxl", "compel-flux" or "pipeline" (the pipeline's own encoder)
    token_limit: int | None  # the prompt's token limit for "pipeline" encoding (the pipeline cuts beyond it)
    token_limit_arg: str | None  # the pipeline argument that sets that limit, passed explicitly
    tokenizer: str  # the pipeline attribute of the tokenizer whose limit counts
    prompt_headroom: int  # tokens of the limit the pipeline spends itself (end token, chat template)
    cfg_arg: str | None  # the pipeline argument for CFG (real guidance with the negative prompt); None: none
    distilled_arg: str | None = None  # the pipeline argument for distilled (embedded) guidance
    distilled_cfg: float | None = None  # its default; None: the family has no distilled guidance
    negative_prompt: bool = True  # whether the pipeline takes a negative prompt
    lora_formats: tuple[str, ...] = ("diffusers", "kohya")
    controlnet_pipelines: dict[str, str] = field(default_factory=dict)  # mode -> diffusers ControlNet pipeline
    controlnet_model: str = ""  # the diffusers ControlNet model class
    variants: tuple[Variant, ...] = ()
    single_file: bool = True  # diffusers loads this family's single-file checkpoints
    # diffusers' names (single_file_utils) for this family's releases, whose configs it fetches for a single file
    diffusers_model_types: tuple[str, ...] = ()

    @property
    def prompt_tokens(self) -> int:
        """The most tokens a prompt may have before the pipeline would cut it."""
        return (self.token_limit or 0) - self.prompt_headroom

    @property
    def flow_matching(self) -> bool:
        return self.denoiser == "transformer"

    def variant_of(self, pipe) -> Variant | None:
        """The variant a loaded pipeline is, by its components' configs (None when the family has none)."""
        for variant in self.variants:
            component = getattr(pipe, variant.component, None)
            if component is not None and component.config.get(variant.config_key) == variant.config_value:
                return variant
        return None

    def check_sampler(self, sampler: str) -> None:
        """Raise RequestError when this family cannot run `sampler`."""
        if sampler not in self.samplers:
            raise RequestError(f"the {sampler} sampler cannot run {self.label} models; choose one of: "
                               f"{', '.join(self.samplers)}")


_SD_COMPONENTS = dict(denoiser="unet", latent_channels=4, packed_latents=False,
           latent_layout="scale",
                      samplers=UNET_SAMPLERS,
                      token_limit=None, token_limit_arg=None, tokenizer="tokenizer", prompt_headroom=0,
                      cfg_arg="guidance_scale")

FAMILIES: dict[str, Family] = {family.id: family for family in (
    Family("sdxl", "SDXL (Pony, Illustrious)",
           {"txt2img": "StableDiffusionXLPipeline", "img2img": "StableDiffusionXLImg2ImgPipeline",
            "inpaint": "StableDiffusionXLInpaintPipeline"}, (),
           ("conditioner.embedders.1.",),
           native_size=1024, steps=30, cfg=6.0, prompt_encoding="compel-sdxl",
           controlnet_pipelines={"txt2img": "StableDiffusionXLControlNetPipeline",
                                 "img2img": "StableDiffusionXLControlNetImg2ImgPipeline",
                                 "inpaint": "StableDiffusionXLControlNetInpaintPipeline"},
           controlnet_model="ControlNetModel", **_SD_COMPONENTS,
           diffusers_model_types=("xl_base", "xl_inpaint", "playground-v2-5")),
    Family("sd", "Stable Diffusion 1.x/2.x",
           {"txt2img": "StableDiffusionPipeline", "img2img": "StableDiffusionImg2ImgPipeline",
            "inpaint": "StableDiffusionInpaintPipeline"}, (),
           ("input_blocks.0.0.weight",),
           # A1111's SD step count is the request's default
           native_size=512, steps=REQUEST_FIELDS["steps"].default, cfg=7.0, prompt_encoding="compel-sd",
           controlnet_pipelines={"txt2img": "StableDiffusionControlNetPipeline",
                                 "img2img": "StableDiffusionControlNetImg2ImgPipeline",
                                 "inpaint": "StableDiffusionControlNetInpaintPipeline"},
           controlnet_model="ControlNetModel", **_SD_COMPONENTS,
           diffusers_model_types=("v1", "v2", "inpainting", "inpainting_v2")),
    Family("sd3", "SD3/3.5",
           {"txt2img": "StableDiffusion3Pipeline", "img2img": "StableDiffusion3Img2ImgPipeline",
            "inpaint": "StableDiffusion3InpaintPipeline"}, (),
           ("joint_blocks.0.context_block.adaLN_modulation.1.bias",),
           native_size=1024, steps=28, cfg=7.0, denoiser="transformer", latent_channels=16, packed_latents=False,
           latent_layout="shift_scale",
           samplers=FLOW_SAMPLERS, prompt_encoding="pipeline", token_limit=256, token_limit_arg="max_sequence_length",
           tokenizer="tokenizer_3", prompt_headroom=1, cfg_arg="guidance_scale",
           controlnet_pipelines={"txt2img": "StableDiffusion3ControlNetPipeline",
                                 "inpaint": "StableDiffusion3ControlNetInpaintingPipeline"},
           lora_formats=("diffusers",), controlnet_model="SD3ControlNetModel",
           diffusers_model_types=("sd3", "sd35_medium", "sd35_large")),
    Family("chroma", "Chroma",
           # ChromaInpaintPipeline (diffusers 0.42.1) reads transformer.config.guidance_embeds, which Chroma's
           # transformer has not: it fails on every call, so inpainting is not offered
           {"txt2img": "ChromaPipeline", "img2img": "ChromaImg2ImgPipeline"}, ("ChromaInpaintPipeline",),
           ("distilled_guidance_layer.in_proj.bias",),
           native_size=1024, steps=26, cfg=4.0, denoiser="transformer", latent_channels=16, packed_latents=True,
           latent_layout="shift_scale",
           samplers=FLOW_SAMPLERS, prompt_encoding="pipeline", token_limit=512, token_limit_arg="max_sequence_length",
           tokenizer="tokenizer", prompt_headroom=1, cfg_arg="guidance_scale",
           diffusers_model_types=("chroma",)),
    Family("flux2", "Flux.2",
           {"txt2img": "Flux2Pipeline"}, ("Flux2KleinPipeline",),
           ("single_stream_modulation.lin.weight",),
           native_size=1024, steps=28, cfg=1.0, denoiser="transformer", latent_channels=32, packed_latents=True,
           latent_layout="flux2",
           samplers=FLOW_SAMPLERS, prompt_encoding="pipeline", token_limit=512, token_limit_arg="max_sequence_length",
           tokenizer="tokenizer", prompt_headroom=64, cfg_arg=None, distilled_arg="guidance_scale", distilled_cfg=4.0,
           negative_prompt=False,
           diffusers_model_types=("flux-2-dev",)),
    Family("flux1", "Flux.1 (dev, schnell)",
           {"txt2img": "FluxPipeline", "img2img": "FluxImg2ImgPipeline", "inpaint": "FluxInpaintPipeline"}, (),
           # Black Forest Labs' names; diffusers' names (GGUFs converted from diffusers folders)
           ("double_blocks.0.img_attn.norm.key_norm.scale", "single_transformer_blocks.0.proj_mlp.weight"),
           native_size=1024, steps=28, cfg=1.0, denoiser="transformer", latent_channels=16, packed_latents=True,
           latent_layout="shift_scale",
           samplers=FLOW_SAMPLERS, prompt_encoding="compel-flux", token_limit=512,
           token_limit_arg="max_sequence_length", tokenizer="tokenizer_2", prompt_headroom=1, cfg_arg="true_cfg_scale",
           distilled_arg="guidance_scale", distilled_cfg=FLUX_DISTILLED_CFG,
           controlnet_pipelines={"txt2img": "FluxControlNetPipeline", "img2img": "FluxControlNetImg2ImgPipeline",
                                 "inpaint": "FluxControlNetInpaintPipeline"},
           controlnet_model="FluxControlNetModel",
           variants=(Variant("dev", "transformer", "guidance_embeds", True, 28, 1.0, FLUX_DISTILLED_CFG),
                     Variant("schnell", "transformer", "guidance_embeds", False, 4, 1.0, None)),
           diffusers_model_types=("flux-dev", "flux-schnell", "flux-fill", "flux-depth")),
    # Z-Image passes its sigmas as a list, which UniPC's flow schedule cannot take (diffusers 0.42.1): Euler only
    Family("zimage", "Z-Image",
           {"txt2img": "ZImagePipeline", "img2img": "ZImageImg2ImgPipeline", "inpaint": "ZImageInpaintPipeline"}, (),
           ("cap_embedder.0.weight",),
           native_size=1024, steps=9, cfg=0.0, denoiser="transformer", latent_channels=16, packed_latents=False,
           latent_layout="shift_scale",
           samplers=("Euler",), prompt_encoding="pipeline", token_limit=512, token_limit_arg="max_sequence_length",
           tokenizer="tokenizer", prompt_headroom=64, cfg_arg="guidance_scale",
           controlnet_pipelines={"txt2img": "ZImageControlNetPipeline",
                                 "inpaint": "ZImageControlNetInpaintPipeline"},
           controlnet_model="ZImageControlNetModel",
           diffusers_model_types=("z-image-turbo",)),
    Family("qwenimage", "Qwen-Image",
           {"txt2img": "QwenImagePipeline", "img2img": "QwenImageImg2ImgPipeline",
            "inpaint": "QwenImageInpaintPipeline"}, (),
           ("txt_norm.weight",),
           native_size=1328, steps=50, cfg=4.0, denoiser="transformer", latent_channels=16, packed_latents=True,
           latent_layout="mean_std",
           samplers=FLOW_SAMPLERS, prompt_encoding="pipeline", token_limit=1024, token_limit_arg="max_sequence_length",
           tokenizer="tokenizer", prompt_headroom=0, cfg_arg="true_cfg_scale",
           controlnet_pipelines={"txt2img": "QwenImageControlNetPipeline"},
           controlnet_model="QwenImageControlNetModel"),
)}


def supported() -> str:
    """The supported families, for messages."""
    return ", ".join(family.label for family in FAMILIES.values())


def family_of_class(class_name: str, source: str) -> Family:
    """The family whose pipelines include `class_name`; RequestError naming it and the supported families."""
    for family in FAMILIES.values():
        if class_name in family.pipelines.values() or class_name in family.also_loads:
            return family
    raise RequestError(f"model {source!r} is a {class_name or 'unknown'} pipeline, which t2i does not run; "
                       f"supported families: {supported()}")


def family_of_tensors(names, source: str) -> Family:
    """The family of a single-file checkpoint or GGUF file from its tensor names; RequestError when none fits."""
    bare = {name.removeprefix("model.diffusion_model.") for name in names}
    for family in FAMILIES.values():  # dict order: SDXL before SD, Chroma and Flux.2 before Flux.1
        for marker in family.single_file_markers:
            if marker in bare or (marker.endswith(".") and any(name.startswith(marker) for name in bare)):
                return family
    raise RequestError(f"{source}: cannot tell which model family this file is (none of its tensor names is one "
                       f"t2i knows); supported families: {supported()}")


def family_of(pipe) -> Family:
    """The family of a loaded pipeline."""
    return family_of_class(type(pipe).__name__, type(pipe).__name__)
