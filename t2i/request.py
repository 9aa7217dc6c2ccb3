"""What a user asks for and what they get back, as dataclasses with explicit validation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from PIL import Image

from .samplers import SAMPLERS
from .settings import Settings

MAX_SEED = 2**32 - 1
# Guidance scale when none is given. Fooocus uses 4 and A1111 7; on the embedded model 3 to 5 do about equally well
# and higher guidance blurs shapes (the guidance sweep in t2i/embedded/model/README.md, "How well it follows prompts").
DEFAULT_CFG = 5.0
DEFAULT_STEPS = 20
DEFAULT_SAMPLER = "Euler"


class RequestError(ValueError):
    """A request that cannot be run as given; the message is meant for the user."""


@dataclass
class GenerationRequest:
    """One generation: txt2img, or img2img with `init_image`, or inpainting with `init_image` + `mask`."""

    prompt: str
    negative_prompt: str = ""
    styles: tuple[str, ...] = ()
    steps: int = DEFAULT_STEPS
    cfg: float = DEFAULT_CFG
    sampler: str = DEFAULT_SAMPLER
    width: int = 0  # 0: the model's native size
    height: int = 0
    seed: int = -1  # -1: a random seed, recorded in the result
    batch_count: int = 1
    batch_size: int = 1
    init_image: Image.Image | None = None
    strength: float = 0.75
    mask: Image.Image | None = None  # white = repaint
    model: str = ""  # "": the default model
    # units of adapter/conditioner plugins by plugin name, e.g. {"lora": [{"name": "ink", "weight": 0.8}]}
    plugin_units: dict = field(default_factory=dict)

    @property
    def mode(self) -> str:
        if self.init_image is None:
            return "txt2img"
        return "inpaint" if self.mask is not None else "img2img"

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
        if not _is_int(self.steps) or not 1 <= self.steps <= settings.max_steps:
            raise RequestError(f"steps must be from 1 to {settings.max_steps}; got {self.steps!r}")
        if not _is_number(self.cfg) or not 0 <= self.cfg <= 30:
            raise RequestError(f"cfg (guidance scale) must be a number from 0 to 30; got {self.cfg!r}")
        if not isinstance(self.sampler, str) or self.sampler not in SAMPLERS:
            raise RequestError(f"unknown sampler {self.sampler!r}; choose one of: {', '.join(SAMPLERS)}")
        if not _is_int(self.seed) or not -1 <= self.seed <= MAX_SEED:
            raise RequestError(f"seed must be -1 (random) or from 0 to {MAX_SEED}; got {self.seed!r}")
        for name in ("batch_count", "batch_size"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise RequestError(f"{name} must be a whole number of at least 1; got {getattr(self, name)!r}")
        if self.batch_count * self.batch_size > settings.max_images:
            raise RequestError(f"batch count x batch size is {self.batch_count * self.batch_size}; "
                               f"the limit is {settings.max_images} images")
        if not _is_number(self.strength) or not 0 < self.strength <= 1:
            raise RequestError(f"strength must be more than 0 and at most 1; got {self.strength!r}")
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

    def recipe(self) -> dict:
        """The request's plain fields (no images), for metadata and links."""
        recipe = {f.name: getattr(self, f.name) for f in fields(self)
                  if f.name not in ("init_image", "mask", "plugin_units")}
        for f in fields(self):  # cfg 5 from a form and 5.0 from the API are one recipe: written 5.0 both ways
            if f.type == "float" and _is_number(recipe[f.name]):
                recipe[f.name] = float(recipe[f.name])
        recipe["styles"] = list(self.styles)
        if self.plugin_units:  # image parameters (e.g. a control image) cannot travel in a recipe
            recipe["plugin_units"] = {name: [{k: v for k, v in unit.items() if not isinstance(v, Image.Image)}
                                             for unit in units] for name, units in self.plugin_units.items()}
        return recipe


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
