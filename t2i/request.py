"""What a user asks for and what they get back, as dataclasses with explicit validation.

Each request field is declared once, here: its default beside it and a FieldSpec (widget, limits, help, CLI flag,
whether recipes carry it). The Generate form, its API parameters, the CLI flags, recipe links and PNG info are
built by walking these declarations (REQUEST_FIELDS), so a new field is one edit here plus its behaviour.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from PIL import Image

from t2i.generation.samplers import SAMPLERS
from t2i.settings import Settings

MAX_SEED = 2**32 - 1
WILDCARD_MODES = ("random", "combinatorial")
MASKED_CONTENT = ("original", "fill", "latent noise", "latent nothing")
INPAINT_AREAS = ("Whole picture", "Only masked")
WIDGETS = ("text", "dropdown", "multiselect", "slider", "number", "image")
# the value type of each annotation a declared field may have (a list of names travels as a tuple)
_VALUE_TYPES = {"str": str, "int": int, "float": float, "tuple[str, ...]": tuple, "Image.Image | None": Image.Image}


class RequestError(ValueError):
    """A request that cannot be run as given; the message is meant for the user."""


@dataclass(frozen=True)
class FieldSpec:
    """How one request field meets people: its widget, limits, help, CLI flag and whether recipes carry it.

    `name`, `type` and `default` are filled in from the dataclass field (see REQUEST_FIELDS), never written twice.
    """

    widget: str  # one of WIDGETS
    label: str = ""  # "": the field's name, capitalised
    help: str = ""
    minimum: float | None = None
    maximum: float | str | None = None  # a number, or the Settings attribute that holds it (e.g. "max_steps")
    step: float | None = None  # a slider's step
    choices: tuple[str, ...] = ()  # fixed choices; the UI fills live ones (style presets, models) itself
    flag: str = ""  # the CLI's "--flag", or a positional argument's name; "": not on the command line
    recipe: bool = True  # carried by recipes, recipe links and PNG info (images never are)
    name: str = ""
    type: type = str  # int, float, str, tuple (a list of names) or Image.Image
    default: Any = None

    def __post_init__(self):
        if self.widget not in WIDGETS:
            raise ValueError(f"widget must be one of {', '.join(WIDGETS)}; got {self.widget!r}")

    def bounds(self, settings: Settings) -> tuple[float | None, float | None]:
        """The field's (minimum, maximum), with a maximum that names a setting read from `settings`."""
        maximum = getattr(settings, self.maximum) if isinstance(self.maximum, str) else self.maximum
        return self.minimum, maximum


def _declare(default: Any = MISSING, **spec) -> Any:
    """A request field with its default and its FieldSpec."""
    return field(default=default, metadata={"spec": FieldSpec(**spec)})


@dataclass
class GenerationRequest:
    """One generation: txt2img, or img2img with `init_image`, or inpainting with `init_image` + `mask`.

    Fields are in the Generate form's order, which is also the order of the `/generate` API parameters.
    """

    prompt: str = _declare(widget="text", flag="prompt")
    negative_prompt: str = _declare("", widget="text", flag="--negative")
    styles: tuple[str, ...] = _declare((), widget="multiselect", flag="--style", help="style preset name")
    model: str = _declare("", widget="dropdown", flag="--model",  # "": the default model
                          help="'embedded', a model folder's name, a diffusers folder, a .safetensors file or a hub id")
    sampler: str = _declare("Euler", widget="dropdown", choices=tuple(SAMPLERS), flag="--sampler")
    steps: int = _declare(20, widget="slider", minimum=1, maximum="max_steps", step=1, flag="--steps")
    # Guidance scale. Fooocus uses 4 and A1111 7; on the embedded model 3 to 5 do about equally well and higher
    # guidance blurs shapes (the guidance sweep in t2i/embedded/model/README.md, "How well it follows prompts").
    cfg: float = _declare(5.0, widget="slider", label="CFG scale", help="guidance scale", minimum=0, maximum=30,
                          step=0.5, flag="--cfg")
    # guidance distilled into the model (Flux.1 dev, Flux.2), written as Forge writes it: "Distilled CFG Scale"
    distilled_cfg: float = _declare(3.5, widget="slider", label="Distilled CFG scale", minimum=0, maximum=30, step=0.5,
                                    flag="--distilled-cfg", help="Flux.1 dev and Flux.2 only; other models refuse "
                                    "a value other than the default")
    width: int = _declare(0, widget="number", help="0: the model's native size", flag="--width")
    height: int = _declare(0, widget="number", help="0: the model's native size", flag="--height")
    seed: int = _declare(-1, widget="number", help="-1: random, recorded in the result", minimum=-1,
                         maximum=MAX_SEED, flag="--seed")
    batch_count: int = _declare(1, widget="slider", minimum=1, maximum="max_images", step=1, flag="--batch-count")
    batch_size: int = _declare(1, widget="slider", minimum=1, maximum="max_images", step=1, flag="--batch-size")
    init_image: Image.Image | None = _declare(None, widget="image", recipe=False, flag="--init-image",
                                              help="img2img / inpainting / outpainting: the image file to start from")
    mask: Image.Image | None = _declare(None, widget="image", label="Mask (white = repaint)", recipe=False,
                                        flag="--mask", help="inpainting: a mask image file, white where to repaint")
    # the form's slider starts at its step: 0 itself is refused (strength must be more than 0)
    strength: float = _declare(0.75, widget="slider", label="Denoising strength", minimum=0.01, maximum=1, step=0.01,
                               flag="--strength")
    # canvas inpainting and outpainting (t2i/generation/outpaint.py): pixels added on each side of the init image,
    # repainted (like the images, links do not carry them; an outpainted image's recipe records them); the mask's
    # blur and "inpaint not masked" as A1111 names them
    outpaint_left: int = _declare(0, widget="number", minimum=0, maximum="max_side", recipe=False,
                                  flag="--outpaint-left",
                                  help="outpainting: pixels (a multiple of 8) added left of the init image")
    outpaint_right: int = _declare(0, widget="number", minimum=0, maximum="max_side", recipe=False,
                                   flag="--outpaint-right",
                                   help="outpainting: pixels (a multiple of 8) added right of the init image")
    outpaint_top: int = _declare(0, widget="number", minimum=0, maximum="max_side", recipe=False,
                                 flag="--outpaint-top",
                                 help="outpainting: pixels (a multiple of 8) added above the init image")
    outpaint_bottom: int = _declare(0, widget="number", minimum=0, maximum="max_side", recipe=False,
                                    flag="--outpaint-bottom",
                                    help="outpainting: pixels (a multiple of 8) added below the init image")
    mask_blur: int = _declare(0, widget="slider", minimum=0, maximum=64, step=1, flag="--mask-blur",
                              help="blur the mask's edge by this many pixels (A1111's Mask blur)")
    inpainting_mask_invert: int = _declare(0, widget="slider", label="Inpaint not masked", minimum=0, maximum=1,
                                           step=1, flag="--inpaint-not-masked",
                                           help="1: repaint what the mask leaves black instead")
    # what the masked area starts from and which area is repainted (t2i/generation/inpaint_area.py), as A1111's
    # "Masked content", "Inpaint area" and "Only masked padding, pixels"
    masked_content: str = _declare("original", widget="dropdown", choices=MASKED_CONTENT, flag="--masked-content",
                                   help="inpainting: what the masked area starts from: original, fill (the "
                                   "surrounding colours), latent noise or latent nothing (zeros)")
    inpaint_area: str = _declare("Whole picture", widget="dropdown", choices=INPAINT_AREAS, flag="--inpaint-area",
                                 help="Only masked: repaint the mask's box (plus padding) at the full size and "
                                 "paste it back")
    inpaint_padding: int = _declare(32, widget="slider", label="Only masked padding, pixels", minimum=0, maximum=256,
                                    step=4, flag="--inpaint-padding",
                                    help="Only masked: pixels of context around the mask's box")
    # hires fix (t2i/generation/hires.py): a second pass at a larger size; on when hires_scale > 1 or a size is given
    hires_scale: float = _declare(1.0, widget="slider", label="Hires upscale", minimum=1, maximum=4, step=0.05,
                                  flag="--hires-scale", help="hires fix: 1 is off; 2 makes a second pass at twice the size")
    hires_width: int = _declare(0, widget="number", label="Hires resize width", flag="--hires-width",
                                help="hires fix target width instead of the upscale factor (0: from the factor)")
    hires_height: int = _declare(0, widget="number", label="Hires resize height", flag="--hires-height",
                                 help="hires fix target height instead of the upscale factor (0: from the factor)")
    hires_steps: int = _declare(0, widget="slider", minimum=0, maximum="max_steps", step=1, flag="--hires-steps",
                                help="sampling steps of the second pass (0: the same as steps)")
    hires_denoise: float = _declare(0.5, widget="slider", label="Hires denoising strength", minimum=0.01, maximum=1,
                                    step=0.01, flag="--hires-denoise", help="how much the second pass may change")
    hires_upscaler: str = _declare("Latent", widget="dropdown", flag="--hires-upscaler",
                                   choices=("Latent", "Latent (nearest)", "Lanczos"),
                                   help="Latent, Latent (nearest), Lanczos, or a model upscaler's name")
    hires_prompt: str = _declare("", widget="text", flag="--hires-prompt", help="second pass prompt (empty: the prompt)")
    hires_negative_prompt: str = _declare("", widget="text", flag="--hires-negative",
                                          help="second pass negative prompt (empty: the negative prompt)")
    hires_sampler: str = _declare("", widget="dropdown", choices=("", *SAMPLERS), flag="--hires-sampler",
                                  help="second pass sampler (empty: the sampler)")
    # A1111's "Clip skip": 2 conditions on the text encoder's penultimate layer (t2i/generation/clip_skip.py)
    clip_skip: int = _declare(1, widget="slider", minimum=1, maximum=2, step=1, flag="--clip-skip",
                              help="1: the text encoder's last layer; 2: its penultimate layer (SDXL always uses it)")
    vae: str = _declare("Automatic", widget="dropdown", choices=("Automatic",), label="VAE", flag="--vae",
                        help="'Automatic' (the model's own) or a VAE from the VAE folder")
    # how `{a|b}` and `__name__` expand (t2i/generation/wildcards.py); recipes record the expanded prompt instead
    wildcards: str = _declare("random", widget="dropdown", choices=WILDCARD_MODES, label="Wildcards",
                              flag="--wildcards", recipe=False,
                              help="random: one expansion drawn with the seed; combinatorial: one image each")
    # units of adapter/conditioner plugins by plugin name, e.g. {"lora": [{"name": "ink", "weight": 0.8}]}
    plugin_units: dict = field(default_factory=dict)

    @property
    def mode(self) -> str:
        if self.init_image is None:
            return "txt2img"
        outpaint = any((self.outpaint_left, self.outpaint_right, self.outpaint_top, self.outpaint_bottom))
        return "inpaint" if self.mask is not None or outpaint else "img2img"

    def validate(self, settings: Settings) -> None:
        """Raise RequestError naming the first field that is out of range; never changes a value."""
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise RequestError("prompt is empty")
        for name in ("prompt", "negative_prompt"):
            text = getattr(self, name)
            if not isinstance(text, str):
                raise RequestError(f"{name} must be text")
            if len(text) > settings.max_prompt_chars:
                raise RequestError(f"{name} is {len(text)} characters; the limit is {settings.max_prompt_chars}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if not _is_int(value) or (value != 0 and not 64 <= value <= settings.max_side) or value % 8:
                raise RequestError(f"{name} must be 0 (the model's size) or a multiple of 8 from 64 to "
                                   f"{settings.max_side}; got {value!r}")
        if self.width * self.height > settings.max_pixels:
            raise RequestError(f"{self.width}x{self.height} is more than {settings.max_pixels} pixels")
        low, high = REQUEST_FIELDS["steps"].bounds(settings)
        if not _is_int(self.steps) or not low <= self.steps <= high:
            raise RequestError(f"steps must be from {low} to {high}; got {self.steps!r}")
        low, high = REQUEST_FIELDS["cfg"].bounds(settings)
        if not _is_number(self.cfg) or not low <= self.cfg <= high:
            raise RequestError(f"cfg (guidance scale) must be a number from {low} to {high}; got {self.cfg!r}")
        low, high = REQUEST_FIELDS["distilled_cfg"].bounds(settings)
        if not _is_number(self.distilled_cfg) or not low <= self.distilled_cfg <= high:
            raise RequestError(f"distilled_cfg must be a number from {low} to {high}; got {self.distilled_cfg!r}")
        if not isinstance(self.sampler, str) or self.sampler not in SAMPLERS:
            raise RequestError(f"unknown sampler {self.sampler!r}; choose one of: {', '.join(SAMPLERS)}")
        low, high = REQUEST_FIELDS["seed"].bounds(settings)
        if not _is_int(self.seed) or not low <= self.seed <= high:
            raise RequestError(f"seed must be {low} (random) or from 0 to {high}; got {self.seed!r}")
        for name in ("batch_count", "batch_size"):
            low, _ = REQUEST_FIELDS[name].bounds(settings)
            if not _is_int(getattr(self, name)) or getattr(self, name) < low:
                raise RequestError(f"{name} must be a whole number of at least {low}; got {getattr(self, name)!r}")
        if self.batch_count * self.batch_size > settings.max_images:
            raise RequestError(f"batch count x batch size is {self.batch_count * self.batch_size}; "
                               f"the limit is {settings.max_images} images")
        _, high = REQUEST_FIELDS["strength"].bounds(settings)
        if not _is_number(self.strength) or not 0 < self.strength <= high:
            raise RequestError(f"strength must be more than 0 and at most {high}; got {self.strength!r}")
        if self.mask is not None and self.init_image is None:
            raise RequestError("a mask needs an init image to paint into")
        for name in ("init_image", "mask"):
            image = getattr(self, name)
            if image is not None and not isinstance(image, Image.Image):
                raise RequestError(f"{name} must be an image")
        if not isinstance(self.styles, (tuple, list)) or not all(isinstance(s, str) for s in self.styles):
            raise RequestError("styles must be a list of style names")
        if not isinstance(self.model, str):
            raise RequestError(f"model must be a model name, folder, file or hub id; got {self.model!r}")
        self._validate_extras(settings)

    @property
    def hires_enabled(self) -> bool:
        """Whether hires fix makes a second pass (an upscale factor above 1, or a target size)."""
        return self.hires_scale != 1 or bool(self.hires_width) or bool(self.hires_height)

    def _validate_extras(self, settings: Settings) -> None:
        """Hires fix, clip skip and VAE fields; the hires size itself is checked once the base size is known."""
        low, high = REQUEST_FIELDS["hires_scale"].bounds(settings)
        if not _is_number(self.hires_scale) or not low <= self.hires_scale <= high:
            raise RequestError(f"hires_scale must be from {low} (off) to {high}; got {self.hires_scale!r}")
        for name in ("hires_width", "hires_height"):
            value = getattr(self, name)
            if not _is_int(value) or (value != 0 and not 64 <= value <= settings.max_side) or value % 8:
                raise RequestError(f"{name} must be 0 or a multiple of 8 from 64 to {settings.max_side}; got {value!r}")
        _, high = REQUEST_FIELDS["hires_steps"].bounds(settings)
        if not _is_int(self.hires_steps) or not 0 <= self.hires_steps <= high:
            raise RequestError(f"hires_steps must be from 0 (as steps) to {high}; got {self.hires_steps!r}")
        if not _is_number(self.hires_denoise) or not 0 < self.hires_denoise <= 1:
            raise RequestError(f"hires_denoise must be more than 0 and at most 1; got {self.hires_denoise!r}")
        for name in ("hires_upscaler", "hires_prompt", "hires_negative_prompt", "hires_sampler", "vae"):
            if not isinstance(getattr(self, name), str):
                raise RequestError(f"{name} must be text; got {getattr(self, name)!r}")
        for name in ("hires_prompt", "hires_negative_prompt"):
            if len(getattr(self, name)) > settings.max_prompt_chars:
                raise RequestError(f"{name} is {len(getattr(self, name))} characters; the limit is "
                                   f"{settings.max_prompt_chars}")
        if self.hires_sampler and self.hires_sampler not in SAMPLERS:
            raise RequestError(f"unknown hires sampler {self.hires_sampler!r}; leave it empty for the sampler, or "
                               f"choose one of: {', '.join(SAMPLERS)}")
        if self.hires_enabled and self.init_image is not None:
            raise RequestError("hires fix is for txt2img: leave hires_scale at 1 with an init image")
        low, high = REQUEST_FIELDS["clip_skip"].bounds(settings)
        if not _is_int(self.clip_skip) or not low <= self.clip_skip <= high:
            raise RequestError(f"clip_skip must be 1 (the last layer) or 2 (the penultimate layer, what compel "
                               f"offers); got {self.clip_skip!r}")
        self._validate_canvas(settings)
        if self.wildcards not in WILDCARD_MODES:
            raise RequestError(f"wildcards must be one of: {', '.join(WILDCARD_MODES)}; got {self.wildcards!r}")

    def _validate_canvas(self, settings: Settings) -> None:
        """Outpainting sides (multiples of 8, the extended canvas within the size limits), mask blur and invert."""
        sides = {name: getattr(self, name) for name in
                 ("outpaint_left", "outpaint_right", "outpaint_top", "outpaint_bottom")}
        for name, value in sides.items():
            if not _is_int(value) or not 0 <= value <= settings.max_side or value % 8:
                raise RequestError(f"{name} must be a multiple of 8 from 0 to {settings.max_side}; got {value!r}")
        if any(sides.values()):
            if self.init_image is None:
                raise RequestError("outpainting needs an init image to extend")
            if isinstance(self.init_image, Image.Image):
                width = self.init_image.width + sides["outpaint_left"] + sides["outpaint_right"]
                height = self.init_image.height + sides["outpaint_top"] + sides["outpaint_bottom"]
                if max(width, height) > settings.max_side or width * height > settings.max_pixels:
                    raise RequestError(f"the outpainted canvas {width}x{height} is beyond the limits "
                                       f"({settings.max_side} pixels a side, {settings.max_pixels} in all)")
        if not _is_int(self.mask_blur) or not 0 <= self.mask_blur <= 64:
            raise RequestError(f"mask_blur must be a whole number of pixels from 0 to 64; got {self.mask_blur!r}")
        if self.inpainting_mask_invert not in (0, 1) or isinstance(self.inpainting_mask_invert, bool):
            raise RequestError(f"inpainting_mask_invert must be 0 (inpaint masked) or 1 (inpaint not masked); "
                               f"got {self.inpainting_mask_invert!r}")
        self._validate_inpaint_area()

    def _validate_inpaint_area(self) -> None:
        """Masked content, inpaint area and its padding (like mask blur, they change nothing without a mask)."""
        if self.masked_content not in MASKED_CONTENT:
            raise RequestError(f"masked_content must be one of: {', '.join(MASKED_CONTENT)}; "
                               f"got {self.masked_content!r}")
        if self.inpaint_area not in INPAINT_AREAS:
            raise RequestError(f"inpaint_area must be one of: {', '.join(INPAINT_AREAS)}; got {self.inpaint_area!r}")
        if not _is_int(self.inpaint_padding) or not 0 <= self.inpaint_padding <= 256:
            raise RequestError(f"inpaint_padding must be a whole number of pixels from 0 to 256; "
                               f"got {self.inpaint_padding!r}")

    def recipe(self) -> dict:
        """The request's plain fields (no images), for metadata and links."""
        recipe = {name: getattr(self, name) for name in PLAIN_FIELDS}
        for name in PLAIN_FIELDS:  # cfg 5 from a form and 5.0 from the API are one recipe: written 5.0 both ways
            if REQUEST_FIELDS[name].type is float and _is_number(recipe[name]):
                recipe[name] = float(recipe[name])
        recipe["styles"] = list(self.styles)
        if self.plugin_units:  # image parameters (e.g. a control image) cannot travel in a recipe
            recipe["plugin_units"] = {name: [{k: v for k, v in unit.items() if not isinstance(v, Image.Image)}
                                             for unit in units] for name, units in self.plugin_units.items()}
        return recipe


# the declared fields by name, in order, each FieldSpec completed from its dataclass field
REQUEST_FIELDS: dict[str, FieldSpec] = {
    f.name: replace(f.metadata["spec"], name=f.name, type=_VALUE_TYPES[f.type],
                    label=f.metadata["spec"].label or f.name.replace("_", " ").capitalize(),
                    default="" if f.default is MISSING else f.default)  # the prompt has none: the form starts empty
    for f in fields(GenerationRequest) if "spec" in f.metadata}
# the fields a recipe carries, in form order
PLAIN_FIELDS = tuple(name for name, spec in REQUEST_FIELDS.items() if spec.recipe)


@dataclass
class GeneratedImage:
    """One output image with the exact parameters that made it."""

    image: Image.Image | None  # None when the image was withheld (e.g. by a safety check)
    seed: int
    parameters: dict
    notice: str = ""


@dataclass
class GenerationResult:
    images: list[GeneratedImage] = field(default_factory=list)
    model: str = ""
    mode: str = "txt2img"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
