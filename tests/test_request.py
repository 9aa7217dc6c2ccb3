"""GenerationRequest.validate: each bad field gets a concise error naming it; good requests pass unchanged."""

import math

import pytest
from PIL import Image

from t2i.request import GenerationRequest, RequestError
from t2i.settings import Settings

SETTINGS = Settings()


@pytest.mark.parametrize("changes, message", [
    ({"prompt": ""}, "prompt is empty"),
    ({"prompt": "   "}, "prompt is empty"),
    ({"prompt": "x" * 10_000}, "prompt is 10000 characters"),
    ({"negative_prompt": "x" * 10_000}, "negative_prompt is 10000 characters"),
    ({"width": 7}, "width must be"),
    ({"width": 100_000}, "width must be"),
    ({"height": 100}, "height must be"),  # not a multiple of 8
    ({"steps": 0}, "steps must be"),
    ({"steps": 10**6}, "steps must be"),
    ({"steps": 2.5}, "steps must be"),
    ({"cfg": math.nan}, "cfg"),
    ({"cfg": math.inf}, "cfg"),
    ({"cfg": -1}, "cfg"),
    ({"sampler": "Heun++"}, "unknown sampler 'Heun++'"),
    ({"seed": -2}, "seed must be"),
    ({"seed": 2**40}, "seed must be"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_count": 10, "batch_size": 10}, "the limit is"),
    ({"strength": 0}, "strength"),
    ({"mask": Image.new("L", (8, 8))}, "a mask needs an init image"),
    ({"styles": "Cinematic"}, "styles must be a list"),
])
def test_bad_fields_are_named(changes, message):
    request = GenerationRequest(**{"prompt": "a red circle", **changes})
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace("+", r"\+")):
        request.validate(SETTINGS)


def test_valid_request_is_not_changed():
    request = GenerationRequest(prompt="  a red circle ", width=64, height=128, seed=0, cfg=0)
    before = request.recipe()
    request.validate(SETTINGS)
    assert request.recipe() == before


def test_mode_follows_inputs():
    image = Image.new("RGB", (64, 64))
    assert GenerationRequest(prompt="x").mode == "txt2img"
    assert GenerationRequest(prompt="x", init_image=image).mode == "img2img"
    assert GenerationRequest(prompt="x", init_image=image, mask=Image.new("L", (64, 64))).mode == "inpaint"


def test_recipe_writes_float_fields_one_way():
    """cfg 5 (a form slider) and 5.0 (the API, the CLI) are the same recipe; the value is never changed."""
    image = Image.new("RGB", (64, 64))
    as_int, as_float = (GenerationRequest(prompt="x", cfg=cfg, strength=strength, init_image=image).recipe()
                        for cfg, strength in ((5, 1), (5.0, 1.0)))
    assert as_int == as_float and repr(as_int["cfg"]) == "5.0" and repr(as_int["strength"]) == "1.0"
    assert GenerationRequest(prompt="x", cfg=7.25).recipe()["cfg"] == 7.25
    assert GenerationRequest(prompt="x", cfg="abc").recipe()["cfg"] == "abc"  # left for validate to name
