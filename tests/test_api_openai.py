"""The OpenAI images API (/v1) in process: generations (b64_json and url), edits from a multipart upload, the model
list, t2i's own fields as extra_body sends them, and errors in OpenAI's shape."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api_helpers import make_studio, png_bytes
from t2i.api.server import api_app
from t2i.recipes.pnginfo import read_png


@pytest.fixture(scope="module")
def client(settings, engine, tmp_path_factory):
    return TestClient(api_app(make_studio(settings, engine, tmp_path_factory.mktemp("openai-data"))))


def test_generations_take_t2i_fields_and_answer_b64_json_or_links(client):
    body = {"prompt": "a red circle", "n": 2, "size": "64x64", "seed": 21, "steps": 3, "guidance_scale": 4.5,
            "sampler": "Euler a", "negative_prompt": "blue", "response_format": "b64_json", "user": "someone"}
    answer = client.post("/v1/images/generations", json=body)
    assert answer.status_code == 200, answer.text
    pngs = [base64.b64decode(item["b64_json"]) for item in answer.json()["data"]]
    recipes = [read_png(png).form for png in pngs]
    assert [r["seed"] for r in recipes] == [21, 22]
    assert recipes[0]["cfg"] == 4.5 and recipes[0]["sampler"] == "Euler a" and recipes[0]["negative_prompt"] == "blue"
    linked = client.post("/v1/images/generations", json={**body, "response_format": "url"}).json()["data"]
    fetched = [client.get(item["url"]) for item in linked]
    assert [f.headers["content-type"] for f in fetched] == ["image/png"] * 2
    assert [f.content for f in fetched] == pngs  # same request, same seed: the same bytes either way
    assert client.get("/v1/images/files/not-a-real-link").status_code == 404


def test_edits_inpaint_the_uploaded_image_inside_its_mask(client):
    init = Image.new("RGB", (64, 64), (250, 250, 250))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    answer = client.post("/v1/images/edits", data={"prompt": "a large red circle", "n": "1", "seed": "5",
                                                   "steps": "3", "strength": "1.0"},
                         files={"image": ("init.png", png_bytes(init), "image/png"),
                                "mask": ("mask.png", png_bytes(mask), "image/png")})
    assert answer.status_code == 200, answer.text
    png = base64.b64decode(answer.json()["data"][0]["b64_json"])
    assert read_png(png).extra["mode"] == "inpaint"
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert np.array_equal(pixels[:, 32:], np.asarray(init)[:, 32:])  # the unmasked half is kept exactly


def test_models_lists_this_servers_models(client):
    answer = client.get("/v1/models").json()
    assert answer["object"] == "list" and {"id": "embedded", "object": "model", "created": 0,
                                           "owned_by": "t2i"} in answer["data"]


@pytest.mark.parametrize("body, param, message", [
    ({"prompt": "a red circle", "model": "dall-e-3"}, "model", "unknown model 'dall-e-3'"),
    ({"prompt": "a red circle", "size": "huge"}, "size", "WIDTHxHEIGHT"),
    ({"prompt": "a red circle", "n": "2"}, "n", "n must be a whole number"),
    ({"prompt": "a red circle", "response_format": "svg"}, "response_format", "use one of b64_json, url"),
    ({"prompt": "a red circle", "background": "transparent"}, "background", "not available in t2i"),
    ({"prompt": "a red circle", "extra_thing": 1}, "extra_thing", "unknown parameter(s): extra_thing"),
    ({"n": 1}, "prompt", "prompt is required"),
    ({"prompt": "a red circle", "size": "7x7"}, None, "width must be"),
    ({"prompt": "a red circle", "seed": -9}, None, "seed must be"),
    ({"prompt": "a red circle", "steps": 10_000}, None, "steps must be"),
])
def test_errors_come_in_openais_shape(client, body, param, message):
    answer = client.post("/v1/images/generations", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and message in error["message"]


def test_an_edit_without_an_image_file_is_refused(client):
    mask = ("mask.png", png_bytes(Image.new("L", (64, 64), 255)), "image/png")
    answer = client.post("/v1/images/edits", data={"prompt": "a red circle", "image": "http://127.0.0.1:9/x.png"},
                         files={"mask": mask})  # a URL where the file belongs: never fetched
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "image"
    answer = client.post("/v1/images/edits", data={"prompt": "a red circle"})  # not multipart at all
    assert answer.status_code == 400 and "multipart/form-data" in answer.json()["error"]["message"]
