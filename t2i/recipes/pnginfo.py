"""Reading a recipe back: our JSON chunk, or A1111 `parameters` text from a PNG or pasted by a user.

The result is a form (GenerateForm field -> value) plus what did not fit the form: A1111 fields
we have no control for (LoRA hashes, ...) are kept in `extra`, and `notes` say why a
value was left out. Nothing is guessed: a value we cannot use is reported, not replaced.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from t2i.recipes.a1111_extras import read_fields as read_extra_fields
from t2i.recipes.infotext import DISTILLED_CFG_FIELD, RECIPE_KEY, STYLES_SEPARATOR
from t2i.request import PLAIN_FIELDS, REQUEST_FIELDS, RequestError
from t2i.generation.samplers import SAMPLERS

MAX_TEXT_CHARS = 100_000

# A1111's own patterns (modules/infotext_utils.py): `Key: value` with JSON-quoted values that hold commas
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")


@dataclass
class ReadRecipe:
    """A recipe read back from an image or text."""

    form: dict
    source: str  # "t2i" (our JSON chunk) or "a1111" (parameters text)
    text: str = ""  # the A1111 parameters text, for display
    extra: dict = field(default_factory=dict)  # fields with no place in the form, by their original name
    notes: list[str] = field(default_factory=list)
    applied_styles: list[str] = field(default_factory=list)  # styles the text names: already in its prompt


def parse_infotext(text: str) -> ReadRecipe:
    """Parse A1111 `parameters` text (prompt, `Negative prompt:` line, `Key: value, ...` line) into a form."""
    if not isinstance(text, str) or not text.strip():
        raise RequestError("the parameters text is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise RequestError(f"the parameters text is {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    *lines, last = text.strip().split("\n")
    if len(_PARAM.findall(last)) < 3:  # A1111: fewer than 3 pairs means the last line is prompt text
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    values = {key.strip(): _unquote(value.strip()) for key, value in _PARAM.findall(last)}
    recipe = ReadRecipe(form={"prompt": "\n".join(prompt), "negative_prompt": "\n".join(negative)},
                        source="a1111", text=text)
    _fill_form(recipe, values)
    return recipe


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _fill_form(recipe: ReadRecipe, values: dict[str, str]) -> None:
    """Move the A1111 fields that map onto the form; keep the rest in `extra`."""
    form, extra = recipe.form, dict(values)
    numbers = (("Steps", "steps"), ("CFG scale", "cfg"), (DISTILLED_CFG_FIELD, "distilled_cfg"), ("Seed", "seed"))
    for key, name in numbers:
        if key in extra:
            form[name] = _number(key, extra.pop(key), REQUEST_FIELDS[name].type)
    if "Size" in extra:
        size = _SIZE.match(extra.pop("Size"))
        if size is None:
            raise RequestError(f"Size must look like 512x768; got {values['Size']!r}")
        form["width"], form["height"] = int(size.group(1)), int(size.group(2))
    if "Model" in extra:
        form["model"] = extra.pop("Model")
    if "Sampler" in extra:
        sampler = _sampler(extra.pop("Sampler"), extra.pop("Schedule type", ""))
        if sampler in SAMPLERS:
            form["sampler"] = sampler
        else:
            recipe.notes.append(f"sampler {sampler!r} is not available here; the form keeps its sampler")
    read_extra_fields(extra, form, recipe.notes, _sampler)  # clip skip, VAE, hires fix (its Denoising strength)
    if "Denoising strength" in extra:
        form["strength"] = _number("Denoising strength", extra.pop("Denoising strength"),
                                   REQUEST_FIELDS["strength"].type)
    if "Styles" in extra:  # our own text: the prompt above already has the styles applied
        recipe.applied_styles = _style_names(extra.pop("Styles"))
        recipe.notes.append(f"the prompt already has its styles applied ({', '.join(recipe.applied_styles)}), "
                            "so no style is selected")
    recipe.extra = extra


def _style_names(value: str) -> list[str]:
    """Style names from `Styles: A; B`, or from the JSON list t2i wrote before (`Styles: ["A", "B"]`)."""
    if value.startswith("["):
        try:
            names = json.loads(value)
        except json.JSONDecodeError:
            names = None
        if isinstance(names, list) and all(isinstance(name, str) for name in names):
            return names
    return [name.strip() for name in value.split(STYLES_SEPARATOR.strip()) if name.strip()]


def _sampler(name: str, schedule: str) -> str:
    """A1111 >= 1.8 writes `Sampler: DPM++ 2M, Schedule type: Karras`; older ones `DPM++ 2M Karras`. Forge writes
    `Schedule type: Simple` for Flux: the model's own flow-matching schedule, which t2i's samplers use."""
    if schedule and schedule not in ("Automatic", "Uniform", "Simple") and not name.endswith(schedule):
        return f"{name} {schedule}"
    return name


def _number(key: str, value: str, kind: type):
    try:
        return kind(value)
    except ValueError:
        raise RequestError(f"{key} must be a number; got {value!r}") from None


def read_png(source: str | Path | bytes) -> ReadRecipe:
    """Read the recipe of a PNG file (path or bytes): our JSON chunk first, else A1111 `parameters` text."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise RequestError(f"this is a {image.format} image; PNG info reads PNG files")
            chunks = dict(image.text)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, RequestError):
            raise
        raise RequestError("the file could not be read as an image") from exc
    text = chunks.get("parameters", "")
    if RECIPE_KEY in chunks:
        return _from_recipe(chunks[RECIPE_KEY], text)
    if text:
        return parse_infotext(text)
    raise RequestError("this PNG carries no generation parameters")


def _from_recipe(raw: str, text: str) -> ReadRecipe:
    try:
        recipe = json.loads(raw)
    except json.JSONDecodeError:
        raise RequestError(f"the {RECIPE_KEY} chunk is not valid JSON") from None
    if not isinstance(recipe, dict):
        raise RequestError(f"the {RECIPE_KEY} chunk is not a JSON object")
    read = ReadRecipe(form={k: recipe[k] for k in PLAIN_FIELDS if k in recipe}, source="t2i", text=text,
                      extra={k: v for k, v in recipe.items() if k not in PLAIN_FIELDS})
    if recipe.get("mode", "txt2img") != "txt2img":
        read.notes.append(f"made with {recipe['mode']}: add the init image (and mask) to replay it")
    return read
