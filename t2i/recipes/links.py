"""Shareable recipe links: a recipe's plain request fields as a URL query string, and back, validated.

`?prompt=a+red+star&seed=7&styles=Watercolor&styles=Anime` fills the form; images never travel in a link.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode

from t2i.request import PLAIN_FIELDS, REQUEST_FIELDS, GenerationRequest, RequestError
from t2i.settings import Settings

# Gradio's own query parameters (`?__theme=dark`, `?view=api`) are not recipe fields
_GRADIO_PARAMS = ("view",)
MAX_QUERY_CHARS = 16_000


def recipe_query(recipe: dict) -> str:
    """The query string (with a leading '?') for a recipe's plain fields; a list repeats, e.g. one per style."""
    items = []
    for name in PLAIN_FIELDS:
        if REQUEST_FIELDS[name].type is tuple:
            items += [(name, value) for value in recipe.get(name, ())]
        elif name in recipe:
            items.append((name, str(recipe[name])))
    return "?" + urlencode(items)


def form_from_query(query: str, settings: Settings) -> dict:
    """The form a link's query string describes ({} for none); RequestError for a field that is unknown,
    repeated, not a number where one is needed, or out of the request limits."""
    query = query.lstrip("?")
    if len(query) > MAX_QUERY_CHARS:
        raise RequestError(f"the link is {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
    values = {k: v for k, v in parse_qs(query, keep_blank_values=True).items()
              if not k.startswith("__") and k not in _GRADIO_PARAMS}
    if not values:
        return {}
    unknown = sorted(set(values) - set(PLAIN_FIELDS))
    if unknown:
        raise RequestError(f"unknown link field {unknown[0]!r}; a link can carry: {', '.join(PLAIN_FIELDS)}")
    form: dict = {}
    for name, given in values.items():
        if REQUEST_FIELDS[name].type is tuple:
            form[name] = [value for value in given if value]
            continue
        if len(given) > 1:
            raise RequestError(f"the link gives {name} {len(given)} times")
        form[name] = _convert(name, given[0])
    if "prompt" not in form:
        raise RequestError("a recipe link needs a prompt")
    GenerationRequest(**form).validate(settings)
    return form


def _convert(name: str, text: str):
    kind = REQUEST_FIELDS[name].type
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise RequestError(f"{name} must be {what}; got {text!r}") from None
