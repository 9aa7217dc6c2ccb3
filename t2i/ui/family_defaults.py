"""What the Generate form switches to when a model is chosen: its family's size, steps, guidance and samplers.

The family is told from the model's files the way the model cache tells it (a diffusers folder's or cached hub
model's `model_index.json`, a single file's or GGUF file's tensor names), without loading any weights, so
choosing a model stays instant. The values come from the registry (t2i/models/families.py), and which request
fields they fill is derived from the declarations: a numeric request field named like a Family attribute (steps,
cfg, distilled_cfg) takes that attribute, and a field whose declared choices are sampler names offers only the
family's samplers. The embedded model keeps the request's declared defaults, which are tuned for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import gradio as gr
from huggingface_hub import try_to_load_from_cache

from t2i.generation.samplers import SAMPLERS
from t2i.models.access import check_server_model, model_folder_entries
from t2i.models.families import Family, family_of_class, family_of_tensors
from t2i.models.file_checks import check_gguf_file, read_safetensors_header
from t2i.request import REQUEST_FIELDS, RequestError
from t2i.settings import Settings

# numeric request fields that a family (or its variant) declares under the same name
FAMILY_FIELDS = tuple(name for name, spec in REQUEST_FIELDS.items()
                      if spec.type in (int, float) and name in {f.name for f in fields(Family)})
SIZE_FIELDS = ("width", "height")  # the model's native size
# request fields that choose a sampler: their declared choices are sampler names (and perhaps "": as the sampler)
SAMPLER_FIELDS = tuple(name for name, spec in REQUEST_FIELDS.items()
                       if spec.widget == "dropdown" and spec.choices and set(spec.choices) - {""} <= set(SAMPLERS))
MAX_HEADER_FILE_BYTES = 64 << 30  # as the model cache reads them


@dataclass(frozen=True)
class ModelDefaults:
    """The form's starting values for one model, and the samplers its family runs."""

    family: str  # a FAMILIES id, or "embedded"
    values: dict  # request field name -> value
    samplers: tuple[str, ...]
    distilled: bool  # the model has distilled guidance (Flux.1 dev, Flux.2): the Distilled CFG box applies


def embedded_defaults() -> ModelDefaults:
    """The embedded model's: the request's declared defaults."""
    names = (*FAMILY_FIELDS, *SIZE_FIELDS)
    return ModelDefaults("embedded", {name: REQUEST_FIELDS[name].default for name in names},
                         REQUEST_FIELDS["sampler"].choices, distilled=False)


def model_defaults(spec: str, settings: Settings) -> ModelDefaults | None:
    """The form defaults of the model the Model box names, read from its files without loading it; None when the
    server would not load it or its files are not here (generating then says why)."""
    spec = (spec or "").strip() or settings.default_model
    if spec == "embedded":
        return embedded_defaults()
    try:
        check_server_model(spec, settings)
        path = model_folder_entries(settings).get(spec) or Path(spec).expanduser()
        if path.is_dir():
            return _folder_defaults(path, spec)
        if path.is_file():
            return _file_defaults(path)
        index = try_to_load_from_cache(spec, "model_index.json")  # a hub model already in the local cache
        return _folder_defaults(Path(index).parent, spec) if isinstance(index, str) else None
    except (RequestError, OSError, ValueError):
        return None


def _folder_defaults(folder: Path, source: str) -> ModelDefaults:
    """A diffusers folder's: its family, the variant its denoiser's config names, the size its configs give."""
    class_name = json.loads((folder / "model_index.json").read_text()).get("_class_name", "")
    family = family_of_class(class_name, source)
    configs = {name: _config(folder, name) for name in (family.denoiser, "vae",
                                                        *(variant.component for variant in family.variants))}
    variant = next((v for v in family.variants if configs[v.component].get(v.config_key) == v.config_value), None)
    size = family.native_size
    sample_size, vae_blocks = configs[family.denoiser].get("sample_size"), configs["vae"].get("block_out_channels")
    if isinstance(sample_size, int) and vae_blocks:  # UNets and SD3 say it in latents; Flux-style configs do not
        size = sample_size * 2 ** (len(vae_blocks) - 1)
    return _defaults(family, variant, size)


def _config(folder: Path, component: str) -> dict:
    path = folder / component / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _file_defaults(path: Path) -> ModelDefaults:
    """A single .safetensors or .gguf file's: its family's defaults (a single file names no variant)."""
    if path.suffix == ".gguf":
        names = check_gguf_file(path, MAX_HEADER_FILE_BYTES)
    else:
        names = [name for name in read_safetensors_header(path, MAX_HEADER_FILE_BYTES) if name != "__metadata__"]
    family = family_of_tensors(names, path.name)
    return _defaults(family, None, family.native_size)


def _defaults(family: Family, variant, size: int) -> ModelDefaults:
    source = variant or family  # a variant carries its own steps, cfg and distilled_cfg
    values = {name: getattr(source, name) for name in FAMILY_FIELDS}
    distilled = values.get("distilled_cfg") is not None
    if not distilled:  # a model without distilled guidance takes only the declared default
        values["distilled_cfg"] = REQUEST_FIELDS["distilled_cfg"].default
    values.update(dict.fromkeys(SIZE_FIELDS, size))
    return ModelDefaults(family.id, values, family.samplers, distilled)


def form_updates(defaults: ModelDefaults | None, current: dict, with_values: bool) -> dict[str, dict]:
    """gr.update()s by field name for the chosen model: the sampler boxes' choices and the Distilled CFG box's
    visibility always; with `with_values` (the user chose the model) the family's values too, and a sampler the
    family cannot run (in `current`, the form's values by field name) replaced by one it can."""
    if defaults is None:  # a model the server will not load: leave the form as it is
        return {}
    updates = {}
    for name in SAMPLER_FIELDS:
        choices = [choice for choice in REQUEST_FIELDS[name].choices if choice == "" or choice in defaults.samplers]
        keep = not with_values or current.get(name) in choices
        updates[name] = gr.update(choices=choices, **({} if keep else {"value": choices[0]}))
    for name, value in defaults.values.items():
        updates[name] = gr.update(value=value) if with_values else gr.update()
    updates["distilled_cfg"] = {**updates["distilled_cfg"], "visible": defaults.distilled}
    return updates
