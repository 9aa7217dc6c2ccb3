"""Wildcards and dynamic prompts: seeded expansion, the folder's files and their limits, the safety gate reading the
expanded text, and recipes that replay to the same bytes."""

from __future__ import annotations

import dataclasses

import pytest
from PIL import Image

from t2i.generation.engine import Engine
from t2i.generation.wildcards import Wildcards, WildcardError
from t2i.recipes.infotext import infotext, png_bytes, quote
from t2i.recipes.pnginfo import read_png
from t2i.request import GenerationRequest, RequestError
from t2i.safety.gate import PromptRefused

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wildcards")
    (folder / "colours.txt").write_text("# a comment line is skipped\n" + "\n".join(COLOURS) + "\n")
    (folder / "shapes").mkdir()
    (folder / "shapes" / "round.txt").write_text("circle\n")
    (folder / "danger.txt").write_text("naked\n")
    (folder / "big.txt").write_text("x" * 3000)
    return folder


@pytest.fixture(scope="module")
def wildcard_settings(settings, folder):
    return dataclasses.replace(settings, wildcards_dir=folder, wildcards_max_kb=2)


@pytest.fixture(scope="module")
def wildcards(wildcard_settings):
    return Wildcards(wildcard_settings)


@pytest.fixture(scope="module")
def wildcard_engine(engine, wildcard_settings):
    """The session engine (its models, plugins and gate shared) with this module's wildcards folder."""
    other = object.__new__(Engine)
    other.__dict__.update(engine.__dict__, settings=wildcard_settings, wildcards=Wildcards(wildcard_settings))
    return other


def expand(wildcards, prompt, seed, negative=""):
    return wildcards.expand(GenerationRequest(prompt=prompt, negative_prompt=negative), seed)


def test_the_same_seed_expands_the_same_way_and_other_seeds_differently(wildcards):
    template = "a __colours__ {circle|square|triangle} on a __colours__ background"
    first = [expand(wildcards, template, seed).request.prompt for seed in range(12)]
    again = [expand(wildcards, template, seed).request.prompt for seed in range(12)]
    assert first == again
    assert len(set(first)) >= 6  # 108 expansions: twelve seeds hit several
    for prompt in first:
        words = prompt.split()
        assert words[1] in COLOURS and words[2] in ("circle", "square", "triangle") and words[5] in COLOURS
    assert expand(wildcards, template, 3).templates == {"Template": template}


def test_plain_prompts_are_left_alone(wildcards):
    prompt = "a (red:1.2) circle, [blue:green:0.5] <lora:ink:0.8>"
    expanded = expand(wildcards, prompt, 1)
    assert expanded.request.prompt == prompt and expanded.templates == {}


def test_the_negative_prompt_and_sub_folders_expand_too(wildcards):
    expanded = expand(wildcards, "a __shapes/round__", 5, negative="{blurry|noisy}")
    assert expanded.request.prompt == "a circle"
    assert expanded.request.negative_prompt in ("blurry", "noisy")
    assert expanded.templates == {"Template": "a __shapes/round__", "Negative Template": "{blurry|noisy}"}


def test_missing_and_oversized_files_and_bad_syntax_are_clear_errors(wildcards):
    with pytest.raises(WildcardError, match=r"no wildcard file __nowhere__ in "):
        expand(wildcards, "a __nowhere__", 1)
    with pytest.raises(WildcardError, match=r"__big__ is 2 KB; the limit is 2 KB \(T2I_WILDCARDS_MAX_KB\)"):
        expand(wildcards, "a __big__", 1)
    with pytest.raises(WildcardError, match=r"dynamic prompt syntax"):
        expand(wildcards, "a {red", 1)


def test_combinations_list_every_expansion_within_the_limit(wildcards):
    assert wildcards.combinations("a {red|blue} {circle|square}", 4) == [
        "a red circle", "a red square", "a blue circle", "a blue square"]
    with pytest.raises(WildcardError, match="more than 3 combinations"):
        wildcards.combinations("a {red|blue} {circle|square}", 3)


def test_the_gate_reads_the_expanded_prompt(wildcard_engine):
    with pytest.raises(PromptRefused):
        wildcard_engine.prepare(GenerationRequest(prompt="a __danger__ person", seed=1))
    with pytest.raises(PromptRefused):  # through the negative prompt's "without" reading too
        wildcard_engine.prepare(GenerationRequest(prompt="a person", negative_prompt="__danger__", seed=1))


def test_the_recipe_keeps_template_and_expansion_and_replays_to_the_same_bytes(wildcard_engine):
    template = "a __colours__ circle on a {white|black} background"
    request = GenerationRequest(prompt=template, seed=7, steps=3)
    item = wildcard_engine.generate(request).images[0]
    params = item.parameters
    assert params["prompt"] != template and params["infotext_extra"]["Template"] == template
    assert params["prompt"] == expand(wildcard_engine.wildcards, template, 7).request.prompt
    text = infotext(params)
    assert text.splitlines()[0] == params["prompt"] and f"Template: {quote(template)}" in text
    # the same request again, and the recipe read back from its PNG, give the same bytes
    again = wildcard_engine.generate(GenerationRequest(prompt=template, seed=7, steps=3)).images[0]
    recipe = read_png(png_bytes(item.image, params)).form
    replay = wildcard_engine.generate(GenerationRequest(**{k: v for k, v in recipe.items() if k in (
        "prompt", "negative_prompt", "seed", "steps", "cfg", "sampler", "width", "height")})).images[0]
    assert item.image.tobytes() == again.image.tobytes() == replay.image.tobytes()
    other = wildcard_engine.generate(GenerationRequest(prompt="a red circle on a white background", seed=7,
                                                       steps=3)).images[0]
    assert isinstance(other.image, Image.Image)


def test_combinatorial_mode_makes_one_image_per_expansion_each_its_own_solo_run(wildcard_engine):
    template = "a {red|blue} {circle|square} on a white background"
    result = wildcard_engine.generate(GenerationRequest(prompt=template, seed=11, steps=2, wildcards="combinatorial"))
    prompts = [item.parameters["prompt"] for item in result.images]
    assert prompts == [f"a {c} {s} on a white background" for c in ("red", "blue") for s in ("circle", "square")]
    for item in result.images:
        assert item.seed == 11 and item.parameters["infotext_extra"]["Template"] == template
        solo = wildcard_engine.generate(GenerationRequest(prompt=item.parameters["prompt"], seed=11, steps=2))
        assert solo.images[0].image.tobytes() == item.image.tobytes()
    with pytest.raises(WildcardError, match="more than 8 combinations"):  # 16 images at 2 per request
        wildcard_engine.generate(GenerationRequest(prompt="__colours__ {a|b|c}", batch_size=2, steps=2,
                                                   wildcards="combinatorial"))
    with pytest.raises(PromptRefused):  # one refused expansion stops the run before its first image
        wildcard_engine.generate(GenerationRequest(prompt="a {red|__danger__} person", steps=2,
                                                   wildcards="combinatorial"))
    with pytest.raises(RequestError, match="wildcards must be one of: random, combinatorial"):
        wildcard_engine.generate(GenerationRequest(prompt="a {red|blue} circle", wildcards="all"))


def test_random_wildcards_draw_per_image_with_each_images_own_seed(wildcard_engine):
    template = "a __colours__ circle on a white background"
    events = []
    result = wildcard_engine.generate(GenerationRequest(prompt=template, seed=20, steps=2, batch_size=2,
                                                        batch_count=2), on_progress=events.append)
    prompts = [item.parameters["prompt"] for item in result.images]
    assert [item.seed for item in result.images] == [20, 21, 22, 23]
    # each image's own draw, recorded with the template; seeds 20-23 draw at least two colours
    assert prompts == [expand(wildcard_engine.wildcards, template, seed).request.prompt for seed in (20, 21, 22, 23)]
    assert len(set(prompts)) > 1
    assert all(item.parameters["infotext_extra"]["Template"] == template for item in result.images)
    assert {(event.batch, event.total_batches) for event in events} == {(1, 4), (2, 4), (3, 4), (4, 4)}
    # an image's seed alone remakes its prompt and its bytes
    solo = wildcard_engine.generate(GenerationRequest(prompt=template, seed=22, steps=2)).images[0]
    assert solo.parameters["prompt"] == prompts[2] and solo.image.tobytes() == result.images[2].image.tobytes()
    with pytest.raises(PromptRefused):  # every draw is screened before the first image is made
        wildcard_engine.generate(GenerationRequest(prompt="a {red|__danger__} person", steps=2, batch_size=4,
                                                   seed=1))
