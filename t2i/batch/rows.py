"""Dataset rows: `{id, prompt, negative_prompt, seed, steps, cfg, sampler, model, loras}` read from JSONL and
checked as GenerationRequests before any image is made.

A bad row stops the run before its first image: every bad row is reported, each naming its id (a typo in row
9,000 should not surface hours later, nor leave a silent hole in the dataset). Refusals that only the engine can
judge (a blocked prompt, a flagged image) are not errors: those rows are listed as withheld.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from t2i.request import MAX_SEED, GenerationRequest, RequestError
from t2i.settings import Settings

ROW_FIELDS = ("id", "prompt", "negative_prompt", "seed", "steps", "cfg", "sampler", "model", "loras")
REQUIRED = ("id", "prompt", "seed")  # a dataset is remade from its rows: no random seeds


@dataclass(frozen=True)
class Row:
    """One dataset row as the engine runs it."""

    id: str
    request: GenerationRequest


def _present(value) -> bool:
    """Whether a row value was given (pandas writes a missing value as None or NaN)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _loras(value, row_id: str) -> tuple[dict, ...]:
    """LoRA units from `["name:0.8", {"name": "ink", "weight": 0.5}]` (the CLI's --lora syntax, or units)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise RequestError(f"row {row_id!r}: loras must be a list of 'NAME[:WEIGHT]' or {{name, weight}} items")
    units = []
    for item in value:
        if isinstance(item, str):
            name, _, weight = item.rpartition(":")
            try:
                units.append({"name": name, "weight": float(weight)} if name else {"name": item})
            except ValueError:
                units.append({"name": item})
        elif isinstance(item, Mapping):
            units.append(dict(item))
        else:
            raise RequestError(f"row {row_id!r}: a LoRA must be 'NAME[:WEIGHT]' or {{name, weight}}; got {item!r}")
    return tuple(units)


def parse_row(values: Mapping, settings: Settings) -> Row:
    """A checked Row from one row's values; RequestError naming the row's id when a value is wrong."""
    given = {key: value for key, value in values.items() if _present(value)}
    row_id = str(given.get("id", "")).strip()
    if not row_id:
        raise RequestError(f"a row has no id: {json.dumps({k: str(v) for k, v in given.items()})[:200]}")
    unknown = sorted(set(given) - set(ROW_FIELDS))
    if unknown:
        raise RequestError(f"row {row_id!r}: unknown field {unknown[0]!r}; a row has: {', '.join(ROW_FIELDS)}")
    missing = [name for name in REQUIRED if name not in given]
    if missing:
        raise RequestError(f"row {row_id!r}: {missing[0]} is required")
    fields = {name: given[name] for name in ROW_FIELDS[1:-1] if name in given}
    if not isinstance(fields["seed"], int) or isinstance(fields["seed"], bool) or not 0 <= fields["seed"] <= MAX_SEED:
        raise RequestError(f"row {row_id!r}: seed must be a whole number from 0 to {MAX_SEED}; got {fields['seed']!r}")
    units = _loras(given["loras"], row_id) if "loras" in given else ()
    request = GenerationRequest(**fields, plugin_units={"lora": list(units)} if units else {})
    try:
        request.validate(settings)
    except RequestError as exc:
        raise RequestError(f"row {row_id!r}: {exc}") from None
    return Row(row_id, request)


def parse_rows(rows: Iterable[Mapping], settings: Settings) -> list[Row]:
    """Every row checked; one RequestError listing each bad row (by id) and each repeated id."""
    parsed, problems, seen = [], [], set()
    for values in rows:
        try:
            row = parse_row(values, settings)
        except RequestError as exc:
            problems.append(str(exc))
            continue
        if row.id in seen:
            problems.append(f"row {row.id!r}: the id is used twice")
        seen.add(row.id)
        parsed.append(row)
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise RequestError(f"{len(problems)} bad row(s), nothing generated:\n" + "\n".join(shown))
    return parsed


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSONL file (blank lines skipped); a line that is not a JSON object names its line number."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RequestError(f"{path.name} line {number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise RequestError(f"{path.name} line {number}: a row must be a JSON object")
            rows.append(row)
    return rows
