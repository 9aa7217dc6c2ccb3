"""PNG files that carry their recipe: A1111's `parameters` text and our full JSON request."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

from PIL import Image, PngImagePlugin

from t2i.recipes.a1111_extras import infotext_fields as extra_fields

RECIPE_KEY = "t2i_recipe"
INFOTEXT_EXTRA_KEY = "infotext_extra"  # params[...]: {field: value} that plugins add (LoRA hashes, ControlNet units)
# A plugin field of this name goes at the end of the prompt line, not among the `Key: value` pairs: A1111 keeps
# `<lora:name:weight>` tags in the prompt, and Civitai and other readers take LoRA names and weights from there
PROMPT_TAGS_FIELD = "Prompt tags"
DISTILLED_CFG_FIELD = "Distilled CFG Scale"  # Forge's name for Flux's distilled guidance
STYLES_SEPARATOR = "; "  # `Styles: Watercolor; Pixel Art`, as SD.Next writes it (A1111 itself writes no styles)


def quote(value) -> str:
    """A value as A1111 writes it: JSON-quoted when it holds a comma, colon or newline, else as it is."""
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",:\n") else text


def infotext(params: dict) -> str:
    """The A1111 'parameters' text for one image (prompt, negative, then key: value pairs)."""
    fields = [("Steps", params["steps"]), ("Sampler", params["sampler"]), ("CFG scale", params["cfg"])]
    if "distilled_cfg" in params:  # only models with distilled guidance record it (Flux.1 dev), as Forge does
        fields.append((DISTILLED_CFG_FIELD, params["distilled_cfg"]))
    fields += [("Seed", params["seed"]), ("Size", f"{params['width']}x{params['height']}")]
    if params.get("model_hash"):
        fields.append(("Model hash", params["model_hash"]))
    fields.append(("Model", params["model"]))
    if "strength" in params:
        fields.append(("Denoising strength", params["strength"]))
    fields.extend(extra_fields(params))  # clip skip, hires fix (t2i/recipes/a1111_extras.py)
    if params.get("styles"):
        fields.append(("Styles", STYLES_SEPARATOR.join(params["styles"])))
    extra = dict(params.get(INFOTEXT_EXTRA_KEY, {}))
    tags = extra.pop(PROMPT_TAGS_FIELD, "")
    fields.extend(extra.items())
    fields.append(("Version", params.get("generator", "t2i")))
    lines = [" ".join(part for part in (params.get("final_prompt", params["prompt"]), tags) if part)]
    negative = params.get("final_negative_prompt", params.get("negative_prompt", ""))
    if negative:
        lines.append(f"Negative prompt: {negative}")
    lines.append(", ".join(f"{k}: {quote(v)}" for k, v in fields))
    return "\n".join(lines)


def png_bytes(image: Image.Image, params: dict, extra_text: dict | None = None) -> bytes:
    """PNG bytes of `image` with its recipe in text chunks (deterministic unless `extra_text` varies)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext(params))
    info.add_text(RECIPE_KEY, json.dumps(params, sort_keys=True))
    for key, value in (extra_text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def write_atomically(path: Path, data: bytes) -> None:
    """Write a file so that readers see either nothing or all of it, never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
