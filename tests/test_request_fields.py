"""Each request field is declared once (t2i/request.py); the form, the API, the CLI, links and PNG info follow it."""

import dataclasses
import re
from pathlib import Path

import pytest
from PIL import Image

from t2i.cli import build_parser
from t2i.recipes.links import form_from_query, recipe_query
from t2i.recipes.pnginfo import parse_infotext
from t2i.request import PLAIN_FIELDS, REQUEST_FIELDS, GenerationRequest, RequestError
from t2i.studio import GenerateForm, Studio

ROOT = Path(__file__).resolve().parent.parent


def test_every_field_but_plugin_units_is_declared_with_its_default():
    declared = [f.name for f in dataclasses.fields(GenerationRequest) if f.name != "plugin_units"]
    assert list(REQUEST_FIELDS) == declared
    for f in dataclasses.fields(GenerationRequest):
        if f.name in REQUEST_FIELDS and f.default is not dataclasses.MISSING:
            assert REQUEST_FIELDS[f.name].default == f.default
    assert REQUEST_FIELDS["prompt"].default == ""  # required in a request; an empty form starts with none


def test_plain_fields_are_the_recipe_fields():
    assert PLAIN_FIELDS == tuple(name for name, spec in REQUEST_FIELDS.items() if spec.recipe)
    assert set(GenerationRequest(prompt="x").recipe()) == set(PLAIN_FIELDS)
    assert not {name for name, spec in REQUEST_FIELDS.items() if spec.widget == "image"} & set(PLAIN_FIELDS)


def test_generate_form_has_every_request_field_with_its_declared_default():
    form = GenerateForm()
    assert [f.name for f in dataclasses.fields(GenerateForm)] == [f.name for f in dataclasses.fields(GenerationRequest)]
    assert {name: getattr(form, name) for name in REQUEST_FIELDS} == {
        name: spec.default for name, spec in REQUEST_FIELDS.items()}
    assert form.plugin_units == {} and form.plugin_units is not GenerateForm().plugin_units


def test_cli_flags_are_the_declared_ones():
    generate = build_parser()._subparsers._group_actions[0].choices["generate"]
    actions = {action.dest: action for action in generate._actions if action.dest in REQUEST_FIELDS}
    assert set(actions) == {name for name, spec in REQUEST_FIELDS.items() if spec.flag}
    for name, action in actions.items():
        spec = REQUEST_FIELDS[name]
        assert (action.option_strings or [action.dest]) == [spec.flag]
        if action.option_strings:
            assert action.default == ([] if spec.type is tuple else spec.default)
            assert action.type is (None if spec.type in (tuple, Image.Image) else spec.type)  # images: file names
    args = build_parser().parse_args(["generate", "a red ball", "-o", "x.png"])
    assert {name: getattr(args, name) for name in actions} == {
        name: [] if REQUEST_FIELDS[name].type is tuple else REQUEST_FIELDS[name].default
        for name in actions if name != "prompt"} | {"prompt": "a red ball"}


def test_links_carry_every_plain_field_with_its_declared_type(settings):
    recipe = {name: spec.default for name, spec in REQUEST_FIELDS.items() if spec.recipe} | {
        "prompt": "a red ball", "styles": ["Anime", "Pop Art"]}
    form = form_from_query(recipe_query(recipe), settings)
    assert form == recipe and [type(form[name]) for name in PLAIN_FIELDS] == [
        list if REQUEST_FIELDS[name].type is tuple else REQUEST_FIELDS[name].type for name in PLAIN_FIELDS]
    with pytest.raises(RequestError, match="a link can carry: " + ", ".join(PLAIN_FIELDS)):
        form_from_query("prompt=x&init_image=y", settings)


def test_png_info_numbers_have_the_declared_types():
    form = parse_infotext("a red ball\nSteps: 7, CFG scale: 6, Seed: 3, Size: 64x64, Denoising strength: 1").form
    assert {name: type(form[name]) for name in ("steps", "cfg", "seed", "strength")} == {
        name: REQUEST_FIELDS[name].type for name in ("steps", "cfg", "seed", "strength")}


def test_generate_tab_and_its_api_follow_the_declarations(settings, engine):
    from t2i.ui import build_app

    demo = build_app(Studio(settings, engine))
    parameters = demo.get_api_info()["named_endpoints"]["/generate"]["parameters"][:len(REQUEST_FIELDS)]
    assert [p["parameter_name"] for p in parameters] == list(REQUEST_FIELDS)
    assert [p["label"] for p in parameters] == [spec.label for spec in REQUEST_FIELDS.values()]
    assert all(p["parameter_has_default"] for p in parameters)  # every API parameter is optional
    defaults = {p["parameter_name"]: p["parameter_default"] for p in parameters}
    assert defaults == {name: list(spec.default) if spec.type is tuple else spec.default
                        for name, spec in REQUEST_FIELDS.items()} | {"model": settings.default_model}
    sliders = {c["props"]["label"]: c["props"] for c in demo.config["components"] if c.get("type") == "slider"}
    for spec in REQUEST_FIELDS.values():
        if spec.widget == "slider":
            props = sliders[spec.label]
            assert (props["minimum"], props["maximum"], props["step"]) == (*spec.bounds(settings), spec.step)


def _restatements(name: str, paths: list[Path]) -> list[str]:
    """Lines that name a request field (name, label or flag) and hold its default as a literal."""
    spec = REQUEST_FIELDS[name]
    words = [name, re.escape(spec.label)] + ([re.escape(spec.flag)] if spec.flag else [])
    mentions = re.compile("|".join(rf"(?<![\w-]){word}(?![\w-])" for word in words), re.IGNORECASE)
    default = spec.default
    literal = re.compile(rf"""["']{re.escape(default)}["']""" if isinstance(default, str)
                         else rf"(?<![\w.]){re.escape(repr(default))}(?![\w.])")
    return [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for path in paths
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if mentions.search(line) and literal.search(line)]


# defaults too common to search for (0, 1, -1, "", ...) are left out; steps 20, cfg 5.0, sampler "Euler" and
# strength 0.75 are not
@pytest.mark.parametrize("name", [name for name, spec in REQUEST_FIELDS.items()
                                  if spec.default not in ("", (), None, 0, 1, -1)])
def test_no_default_is_written_outside_its_declaration(name):
    declaration = ROOT / "t2i" / "request.py"
    assert _restatements(name, [declaration])  # the search finds the declaration itself, so it would find a copy
    # the benchmark, the embedded model's training and LoRA training samples run fixed protocols of their own
    protocols = [ROOT / "t2i" / folder for folder in ("eval", "embedded", "train")]
    sources = [path for path in [*(ROOT / "t2i").rglob("*.py"), *(ROOT / "plugins").rglob("*.py"), ROOT / "app.py"]
               if path != declaration and not any(folder in path.parents for folder in protocols)]
    repeated = _restatements(name, sources)
    assert not repeated, f"{name}'s default {REQUEST_FIELDS[name].default!r} is written again:\n" + "\n".join(repeated)
