"""The family of a model the page names, told from its files without loading it: the LoRA lists (which LoRAs fit)
and the Train tab (which base models can train, and what their LoRAs are for) ask it."""

from __future__ import annotations

import json

from t2i.models.families import family_of_class
from t2i.settings import EMBEDDED_MODEL_DIR, Settings
from t2i.ui.family_defaults import model_defaults


def model_family(spec: str, settings: Settings) -> str | None:
    """The family id of the model `spec` names (as the Generate form reads its defaults); None when its files cannot
    tell (a hub id not in the local cache, a model the server does not offer)."""
    defaults = model_defaults(spec, settings)
    if defaults is None:
        return None
    if defaults.family == "embedded":  # the form keeps the request's own defaults for it; it is an SD pipeline
        return family_of_class(json.loads((EMBEDDED_MODEL_DIR / "model_index.json").read_text())["_class_name"],
                               "embedded").id
    return defaults.family
