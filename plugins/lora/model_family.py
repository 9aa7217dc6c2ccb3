"""The family of the model a Generate form names, without loading it, so the LoRA lists offer only LoRAs that fit."""

from __future__ import annotations

import json
from pathlib import Path

from t2i.models.access import check_server_model, model_folder_entries
from t2i.models.cache import ModelCache
from t2i.models.families import family_of_class, family_of_tensors
from t2i.models.file_checks import read_safetensors_header
from t2i.request import RequestError
from t2i.settings import EMBEDDED_MODEL_DIR, Settings

MAX_CHECKPOINT_BYTES = 64 << 30  # only the header of a checkpoint is read; this bounds what its size may claim


def model_family(settings: Settings, models: ModelCache, spec: str) -> str | None:
    """The family id of the model `spec` names (as a web form may name it): from its model_index.json or its
    checkpoint's tensor names, else from the loaded model; None when that cannot be told without loading (a hub
    id or GGUF file not loaded yet, a model the server does not offer)."""
    spec = (spec or settings.default_model).strip()
    try:
        check_server_model(spec, settings)
    except RequestError:
        return None
    path = EMBEDDED_MODEL_DIR if spec == "embedded" else (model_folder_entries(settings).get(spec)
                                                          or Path(spec).expanduser())
    try:
        if (path / "model_index.json").is_file():
            class_name = json.loads((path / "model_index.json").read_text()).get("_class_name", "")
            return family_of_class(class_name, spec).id
        if path.suffix == ".safetensors" and path.is_file():
            return family_of_tensors(read_safetensors_header(path, MAX_CHECKPOINT_BYTES), spec).id
    except (RequestError, OSError, ValueError):
        return None
    # asked only when the files cannot tell: the cache's lock is held while another model loads
    return models.get(spec).family if spec in models.loaded() else None
