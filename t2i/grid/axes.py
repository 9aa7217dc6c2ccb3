"""X/Y/Z plot axes: which request field an axis varies and its values, in A1111's syntax.

Values are a comma list (`a, b, "c, with a comma"`), and number fields take ranges too: `1-5` (every whole
number), `1-10 (+2)` (a step), `0.5-2 [4]` (a count, evenly spaced). Any plain request field can be an axis
(seed, steps, CFG, sampler, model, size, strength, ...), plus `Prompt S/R`: the first value is searched for in
the prompt and negative prompt, and each value replaces it. A LoRA's weight is a Prompt S/R over its
`<lora:name:weight>` tag.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from typing import Any

from t2i.request import REQUEST_FIELDS, GenerationRequest, RequestError

PROMPT_SR = "prompt_sr"
PROMPT_SR_LABEL = "Prompt S/R"
# fields an axis can vary: a recipe's plain values (images and plugin units cannot be listed in a text box)
AXIS_FIELDS = tuple(name for name, spec in REQUEST_FIELDS.items() if spec.recipe
                    and spec.type in (int, float, str, tuple) and name not in ("batch_count", "batch_size"))
_ALIASES = {"checkpoint": "model", "checkpointname": "model", "denoising": "strength", "cfgscale": "cfg",
            "guidance": "cfg", "promptsr": PROMPT_SR, "style": "styles"}
_NUMBER = r"[+-]?\s*(?:\d+(?:\.\d*)?|\.\d+)"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*-\s*({_NUMBER})\s*(?:\(\s*([+-]\s*{_NUMBER})\s*\)|\[\s*(\d+)\s*\])?\s*$")
MAX_VALUES = 1000  # a range that long is a typo, not a plot


def _key(text: str) -> str:
    return re.sub(r"[\s_/\-]", "", text.lower())


def axis_choices() -> list[str]:
    """The names an axis can take, as the UI offers them (labels, Prompt S/R first)."""
    return [PROMPT_SR_LABEL] + [REQUEST_FIELDS[name].label for name in AXIS_FIELDS]


def field_for(name: str) -> str:
    """The request field (or PROMPT_SR) an axis name means: a field's name or label, or an A1111 name."""
    key = _key(name)
    lookup = {_key(n): n for n in AXIS_FIELDS} | {_key(REQUEST_FIELDS[n].label): n for n in AXIS_FIELDS}
    lookup |= {_key(PROMPT_SR_LABEL): PROMPT_SR, **_ALIASES}
    if key not in lookup:
        raise RequestError(f"unknown plot axis {name!r}; choose one of: {', '.join(axis_choices())}")
    return lookup[key]


def split_values(text: str) -> list[str]:
    """A comma list as A1111 reads it: spaces after commas dropped, double quotes keep commas inside a value."""
    try:
        rows = list(csv.reader([text], skipinitialspace=True))
    except csv.Error as exc:
        raise RequestError(f"axis values {text!r}: {exc}") from exc
    return [value.strip() for value in (rows[0] if rows else []) if value.strip()]


def _number(text: str, kind: type, field: str):
    text = text.replace(" ", "")
    try:
        return kind(text) if kind is float else int(text)
    except ValueError:
        raise RequestError(f"{field}: {text!r} is not a {'number' if kind is float else 'whole number'}") from None


def parse_values(field: str, text: str) -> list[Any]:
    """The values an axis text gives for `field`: numbers (with ranges) for number fields, else the listed texts."""
    if not isinstance(text, str) or not text.strip():
        raise RequestError(f"the {_label(field)} axis has no values")
    kind = REQUEST_FIELDS[field].type if field in REQUEST_FIELDS else str
    values: list[Any] = []
    for item in split_values(text):
        if kind in (int, float) and (match := _RANGE.match(item)):
            values += _expand_range(match, kind, _label(field))
        elif kind in (int, float):
            values.append(_number(item, kind, _label(field)))
        elif kind is tuple:  # a style axis: one style per value
            values.append((item,))
        else:
            values.append(item)
        if len(values) > MAX_VALUES:
            raise RequestError(f"the {_label(field)} axis has more than {MAX_VALUES} values")
    return values


def _expand_range(match: re.Match, kind: type, label: str) -> list:
    start, end = (_number(match.group(i), kind, label) for i in (1, 2))
    step, count = match.group(3), match.group(4)
    if count is not None:  # `[n]`: n values evenly spaced from start to end
        n = int(count)
        if n < 1:
            raise RequestError(f"{label}: a range needs a count of at least 1")
        points = [start + (end - start) * i / max(n - 1, 1) for i in range(n)]
        return [round(p) if kind is int else round(p, 6) for p in points]
    step_value = _number(step, kind, label) if step else (1 if end >= start else -1)
    if step_value == 0 or (end - start) * step_value < 0:
        raise RequestError(f"{label}: the step {step_value} never gets from {start} to {end}")
    count = int((end - start) / step_value + 1e-9) + 1
    if count > MAX_VALUES:
        raise RequestError(f"{label}: the range {start}-{end} has more than {MAX_VALUES} values")
    return [start + i * step_value if kind is int else round(start + i * step_value, 6) for i in range(count)]


def _label(field: str) -> str:
    return PROMPT_SR_LABEL if field == PROMPT_SR else REQUEST_FIELDS[field].label


@dataclass(frozen=True)
class Axis:
    """One plot axis: the field it varies and its values, in order."""

    field: str
    values: tuple

    @classmethod
    def parse(cls, name: str, text: str) -> Axis:
        """An axis from its name (`cfg`, `CFG scale`, `Prompt S/R`, ...) and A1111 value text (`3-7 (+2)`)."""
        field = field_for(name)
        return cls(field, tuple(parse_values(field, text)))

    @classmethod
    def from_spec(cls, spec: str) -> Axis:
        """An axis from the command line's `NAME:VALUES` (`cfg:3,5,7`, `seed:1-3`, `Prompt S/R:red,blue`)."""
        name, colon, text = spec.partition(":")
        if not colon:
            raise RequestError(f"axis {spec!r}: write it as NAME:VALUES, e.g. cfg:3,5,7")
        return cls.parse(name.strip(), text)

    @property
    def label(self) -> str:
        return _label(self.field)

    def value_label(self, value) -> str:
        """How one value is written on the grid, e.g. `Steps: 30`, or the replacement text for Prompt S/R."""
        if self.field == PROMPT_SR:
            return str(value)
        shown = ", ".join(value) if isinstance(value, tuple) else value
        return f"{self.label}: {shown if shown != '' else '(default)'}"

    def apply(self, request: GenerationRequest, value) -> GenerationRequest:
        """`request` with this axis set to `value` (Prompt S/R replaces the first value in both prompts)."""
        if self.field != PROMPT_SR:
            return replace(request, **{self.field: value})
        search = self.values[0]
        return replace(request, prompt=request.prompt.replace(search, value),
                       negative_prompt=request.negative_prompt.replace(search, value))

    def check(self, request: GenerationRequest) -> None:
        """Refuse an axis that cannot vary this request: a Prompt S/R whose first value is not in the prompt."""
        if self.field == PROMPT_SR and self.values[0] not in request.prompt + "\n" + request.negative_prompt:
            raise RequestError(f"Prompt S/R: {self.values[0]!r} (its first value) is not in the prompt or "
                               "the negative prompt")
