"""The ControlNet conditioner: up to three units, each a control image, a preprocessor, a model, a scale and a
guidance window (start and end as fractions of the sampling steps).

Per request, under the model lock, it builds the family's ControlNet pipeline for the mode (SD 1.x/2.x, SDXL,
Flux.1, SD3/3.5, Qwen-Image, Z-Image: t2i/models/families.py `controlnet_pipelines`) with `from_pipe`, which
shares the loaded components, so nothing of one request is left on the model for the next. What each kind of
ControlNet takes (several units, the guidance window, the modes the run path can drive) is the table in
plugins/controlnet/families.py. Flux.2 and Chroma are refused: diffusers has no ControlNet for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import diffusers
from PIL import Image

from t2i.web.uploads import load_image_file
from t2i.plugins import CliFlag, Conditioner, Param
from t2i.request import RequestError

from .families import KINDS, ControlNetKind
from .models import EMBEDDED_NAME, library, load_controlnet, short_hash
from .preprocessors import PREPROCESSORS, Preprocessors


class ControlNet(Conditioner):
    """Steers composition with control images (edges, scribbles, depth, pose) through ControlNet models."""

    name = "controlnet"
    label = "ControlNet"
    max_units = 3
    params = (
        Param("image", "image", label="Control image", help="the picture to take edges, depth or pose from"),
        Param("preprocessor", "choice", default="canny", choices=tuple(PREPROCESSORS), label="Preprocessor",
              help="'none' uses the image as the control map; HED, MiDaS, OpenPose ... need their weights"),
        Param("model", "choice", default=EMBEDDED_NAME, label="ControlNet model"),
        Param("scale", "float", default=1.0, minimum=0.0, maximum=2.0, step=0.05, label="Control weight"),
        Param("start", "float", default=0.0, minimum=0.0, maximum=1.0, step=0.05, label="Starting step",
              help="fraction of the steps before the ControlNet starts"),
        Param("end", "float", default=1.0, minimum=0.0, maximum=1.0, step=0.05, label="Ending step",
              help="fraction of the steps after which it stops; end = start: no effect"),
    )
    cli_flag = CliFlag("--control", "TYPE[@MODEL]:IMAGE[:SCALE[:START:END]]",
                       "a ControlNet unit: preprocessor (canny, threshold, none, ...), optional ControlNet model "
                       "(default embedded-edges), control image, weight, start and end fractions (repeatable)")
    ui_module = ".ui"

    def __init__(self, settings):
        self.settings = settings
        self.preprocessors = Preprocessors(settings.annotators)

    def models(self) -> dict[str, str]:
        """ControlNet model names -> folders or hub ids, scanned now (the library may change)."""
        return library(self.settings.controlnet_dirs)

    def choices(self, param: Param) -> list[str]:
        return list(self.models()) if param.name == "model" else list(param.choices)

    def unit_from_values(self, values: Mapping[str, Any]) -> dict:
        unit = super().unit_from_values(values)
        if unit["start"] > unit["end"]:
            raise RequestError(f"{self.name}: start ({unit['start']}) must not be after end ({unit['end']})")
        return unit

    def preview(self, unit: dict, width: int, height: int) -> Image.Image:
        """The control map a unit's preprocessor makes from its image, at the generation size."""
        return self.preprocessors.run(unit["preprocessor"], unit["image"], width, height)

    def unit_from_cli(self, text: str) -> dict:
        """A unit from `TYPE[@MODEL]:IMAGE[:SCALE[:START:END]]` (TYPE is the preprocessor), its image read now."""
        parts = text.split(":")
        numbers = []
        while len(parts) > 2 and len(numbers) < 3 and _is_number(parts[-1]):
            numbers.insert(0, float(parts.pop()))
        kind, path = parts[0], ":".join(parts[1:])
        if not kind or not path or len(numbers) == 2:
            raise RequestError(f"{self.cli_flag.flag} expects TYPE:IMAGE[:SCALE[:START:END]]; got {text!r}")
        if not Path(path).is_file():
            raise RequestError(f"control image {path!r} does not exist")
        preprocessor, _, model = kind.partition("@")
        unit = {"preprocessor": preprocessor, "image": load_image_file(
            path, self.settings.max_upload_mb << 20, self.settings.max_pixels, "control image").convert("RGB")}
        unit.update({"model": model} if model else {})
        unit.update(zip(("scale", "start", "end"), numbers))
        return unit

    def prepare(self, model, pipe, mode: str, units: list[dict], width: int, height: int):
        """The ControlNet pipeline for `mode` sharing `pipe`'s components, and its control arguments."""
        active = [u for u in units if u["end"] > u["start"]]  # an empty guidance window does nothing
        if not active:
            return pipe, {}
        kind = check_family(model, mode, active)
        sources = self.models()
        controlnets = []
        for unit in active:
            if unit["model"] not in sources:  # the library changed since the unit was checked
                raise RequestError(f"{self.name}: ControlNet model {unit['model']!r} is no longer available")
            controlnets.append(load_controlnet(model, unit["model"], sources[unit["model"]]))
        maps = [self.preview(unit, width, height) for unit in active]
        single = len(active) == 1
        controlnet = controlnets[0] if single else getattr(diffusers, kind.multi_class)(controlnets)
        pipeline_class = getattr(diffusers, model.family_spec.controlnet_pipelines[mode])
        pipe = pipeline_class.from_pipe(pipe, controlnet=controlnet)
        kwargs = {
            kind.txt2img_image_arg if mode == "txt2img" else "control_image": maps[0] if single else maps,
            "controlnet_conditioning_scale": active[0]["scale"] if single else [u["scale"] for u in active],
        }
        if kind.window:
            kwargs.update(control_guidance_start=[u["start"] for u in active],
                          control_guidance_end=[u["end"] for u in active])
        return pipe, kwargs

    def describe(self, units: list[dict]) -> dict[str, str]:
        """A1111's 'ControlNet N' fields (quoted by the infotext writer): module, model [hash], weight, window."""
        sources = self.models()
        fields = {}
        for k, unit in enumerate(units):
            digest = short_hash(sources.get(unit["model"], ""))
            model = f"{unit['model']} [{digest}]" if digest else unit["model"]
            fields[f"ControlNet {k}"] = (f"Module: {unit['preprocessor']}, Model: {model}, Weight: {unit['scale']}, "
                                         f"Guidance Start: {unit['start']}, Guidance End: {unit['end']}")
        return fields


def check_family(model, mode: str, units: list[dict]) -> ControlNetKind:
    """The kind of ControlNet `model`'s family takes; RequestError when it takes none, or not for `mode` or `units`."""
    family = model.family_spec
    if not family.controlnet_model:
        raise RequestError(f"ControlNet: diffusers has no ControlNet for {family.label} models")
    kind = KINDS[family.controlnet_model]
    if mode in kind.refused_modes:
        raise RequestError(f"ControlNet: {mode} with a ControlNet is not offered for {family.label} models: "
                           f"{kind.refused_modes[mode]}")
    if mode not in family.controlnet_pipelines:
        offered = [m for m in family.controlnet_pipelines if m not in kind.refused_modes]
        raise RequestError(f"ControlNet: diffusers has no {mode} ControlNet pipeline for {family.label} models; "
                           f"ControlNets run there in {' and '.join(offered)}")
    if len(units) > 1 and kind.multi_class is None:
        raise RequestError(f"ControlNet: {family.label} models take one ControlNet unit ({kind.model_class} has no "
                           f"multi-ControlNet in diffusers); this request has {len(units)}")
    if not kind.window and any((u["start"], u["end"]) != (0.0, 1.0) for u in units):
        raise RequestError(f"ControlNet: {family.label}'s ControlNet pipeline has no guidance window; leave start "
                           "at 0 and end at 1")
    return kind


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
