"""Recipe links: recipe -> query string -> the same form, validated on the way in."""

import pytest

from t2i.recipes.links import form_from_query, recipe_query
from t2i.request import PLAIN_FIELDS, GenerationRequest, RequestError

RECIPE = {"prompt": "a red star, (blue:1.2) & more?", "negative_prompt": "green #1", "styles": ["Pop Art", "Anime"],
          "steps": 12, "cfg": 6.5, "sampler": "DPM++ 2M Karras", "width": 64, "height": 64, "seed": 4242,
          "batch_count": 1, "batch_size": 2, "strength": 0.6, "model": "embedded",
          "hires_scale": 2.0, "hires_width": 0, "hires_height": 0, "hires_steps": 8, "hires_denoise": 0.4,
          "hires_upscaler": "Latent (nearest)", "hires_prompt": "a red star, sharp", "hires_negative_prompt": "",
          "hires_sampler": "Euler a", "clip_skip": 2, "vae": "my-vae.safetensors",
          "mask_blur": 4, "inpainting_mask_invert": 1, "masked_content": "latent noise",
          "inpaint_area": "Only masked", "inpaint_padding": 16, "distilled_cfg": 4.0}


def test_round_trip_keeps_every_plain_field(settings):
    query = recipe_query({**RECIPE, "model_hash": "abc", "final_prompt": "not carried"})
    assert query.startswith("?prompt=a+red+star%2C+%28blue%3A1.2%29+%26+more%3F&")
    assert "model_hash" not in query and "final_prompt" not in query
    form = form_from_query(query, settings)
    assert form == RECIPE and set(form) == set(PLAIN_FIELDS)


def test_a_generated_recipe_round_trips(engine, settings):
    item = engine.generate(GenerationRequest(prompt="a green ring", steps=2, seed=5)).images[0]
    form = form_from_query(recipe_query(item.parameters), settings)
    assert form["seed"] == 5 and form["prompt"] == "a green ring" and form["width"] == 64


def test_partial_link_and_gradio_params(settings):
    assert form_from_query("", settings) == {}
    assert form_from_query("?__theme=dark", settings) == {}
    assert form_from_query("prompt=cat&seed=3&__theme=dark", settings) == {"prompt": "cat", "seed": 3}


@pytest.mark.parametrize("query, message", [
    ("prompt=cat&sed=3", "unknown link field 'sed'"),
    ("seed=3", "needs a prompt"),
    ("prompt=cat&steps=20.5", "steps must be a whole number"),
    ("prompt=cat&cfg=high", "cfg must be a number"),
    ("prompt=cat&seed=1&seed=2", "gives seed 2 times"),
    ("prompt=cat&steps=100000", "steps must be from 1 to"),
    ("prompt=cat&sampler=Heun+9000", "unknown sampler"),
    ("prompt=cat&width=65", "width must be 0"),
    ("prompt=" + "x" * 20000, "the limit is 16000"),
])
def test_bad_links_are_refused_with_the_reason(settings, query, message):
    with pytest.raises(RequestError, match=message):
        form_from_query(query, settings)
