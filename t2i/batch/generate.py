"""The core of dataset generation: one function from a batch of rows to a table of images.

`generate_rows` is what every runner calls: the local loop, each Ray Data actor, and a Spark `mapInPandas`
function (README, "Dataset generation"). It never raises for one row: a refused prompt or a flagged image is a
`withheld` row, any other request error a `failed` row, so one row cannot sink a batch of a distributed job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from t2i.generation.engine import Engine
from t2i.recipes.labels import Labeller
from t2i.request import PLAIN_FIELDS, GenerationRequest, RequestError
from t2i.safety.gate import PromptRefused

from t2i.batch.rows import parse_row

# one output row per input row; `image` holds PNG bytes (recipe and labels inside) only when status is "ok"
SCHEMA = pa.schema([("id", pa.string()), ("image", pa.binary()), ("caption", pa.string()), ("recipe", pa.string()),
                    ("sha256", pa.string()), ("status", pa.string()), ("reason", pa.string())])
# the same schema as Spark DDL, for `mapInPandas(..., schema=SPARK_SCHEMA)`
SPARK_SCHEMA = ("id string, image binary, caption string, recipe string, sha256 string, status string, "
                "reason string")


def generate_rows(rows: pd.DataFrame | Iterable[Mapping], engine: Engine,
                  labeller: Labeller | None = None) -> pd.DataFrame:
    """Generate one image per row (checked as a GenerationRequest) through `engine`; a DataFrame of SCHEMA's
    columns, one row per input row in order: status `ok` (image, caption, recipe, sha256), `withheld` (the safety
    gate refused the prompt or the image; nothing of it is returned) or `failed` (reason says why)."""
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    labeller = labeller or Labeller.from_settings(engine.settings)
    out = [_generate_one(values, engine, labeller) for values in records]
    return pd.DataFrame(out, columns=SCHEMA.names)


def _generate_one(values: Mapping, engine: Engine, labeller: Labeller) -> dict:
    row_id = str(values.get("id", ""))
    try:
        row = parse_row(_plain(values), engine.settings)
        result = engine.generate(row.request)
    except PromptRefused as exc:
        return _empty(row_id, "withheld", str(exc))
    except RequestError as exc:
        return _empty(row_id, "failed", str(exc))
    item = result.images[0]
    if item.image is None:  # the image checker flagged it: listed, never written
        return _empty(row_id, "withheld", item.notice or "withheld by the safety gate")
    png = labeller.png(item.image, item.parameters, title=f"{row.id}.png")
    return {"id": row.id, "image": png, "caption": item.parameters["prompt"],
            "recipe": json.dumps(item.parameters, sort_keys=True), "sha256": hashlib.sha256(png).hexdigest(),
            "status": "ok", "reason": ""}


def _plain(values: Mapping) -> dict:
    """A row from pandas or Arrow as plain Python values: numpy scalars become numbers, arrays (`loras`) lists."""
    return {key: value.tolist() if isinstance(value, np.ndarray) else value.item() if isinstance(value, np.generic)
            else value for key, value in values.items()}


def _empty(row_id: str, status: str, reason: str) -> dict:
    return {"id": row_id, "image": None, "caption": None, "recipe": None, "sha256": None, "status": status,
            "reason": reason}


def request_from_recipe(recipe: str | Mapping) -> GenerationRequest:
    """The request that remakes a dataset image from its `recipe` column (same bytes through the Engine)."""
    recipe = json.loads(recipe) if isinstance(recipe, str) else dict(recipe)
    fields = {name: recipe[name] for name in PLAIN_FIELDS if name in recipe}
    fields["styles"] = tuple(fields.get("styles", ()))
    return GenerationRequest(**fields, plugin_units=recipe.get("plugin_units", {}))

