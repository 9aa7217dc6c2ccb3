"""The A1111 API (/sdapi/v1) in process, over the same Studio as the page: the listing routes, per-caller options,
PNG info, and hostile input answered with clear 4xx errors (measured images and the page's bytes:
tests/test_api_clients.py, with the real clients)."""

from __future__ import annotations

import base64
import io
import json

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api_helpers import bomb_png, data_url, decoded, make_studio, without_chunk
from t2i.api.server import api_app
from t2i.settings import EMBEDDED_MODEL_DIR
from t2i.studio import GenerateForm


@pytest.fixture(scope="module")
def studio(settings, engine, tmp_path_factory):
    studio = make_studio(settings, engine, tmp_path_factory.mktemp("sdapi-data"))
    studio.settings.model_dir.mkdir()
    (studio.settings.model_dir / "shapes-copy").symlink_to(EMBEDDED_MODEL_DIR)  # a second model to choose
    return studio


@pytest.fixture(scope="module")
def client(studio):
    return TestClient(api_app(studio))


def test_the_api_answers_the_bytes_of_the_pages_path(client, studio):
    answer = client.post("/sdapi/v1/txt2img", json={"prompt": "a red circle", "seed": 7, "steps": 2})
    files = next(update.files for update in studio.generate(GenerateForm(prompt="a red circle", seed=7, steps=2),
                                                            "page-session") if update.files)
    # the same bytes, but for the page file's own id chunk (each saved file has one)
    assert [without_chunk(path.read_bytes(), "t2i_file_id") for path in files] == decoded(answer.json()["images"])


def test_hires_fix_and_clip_skip_map_onto_the_request(client):
    answer = client.post("/sdapi/v1/txt2img", json={
        "prompt": "a red circle", "seed": 3, "steps": 2, "enable_hr": True, "hr_scale": 2, "hr_second_pass_steps": 5,
        "denoising_strength": 0.4, "hr_upscaler": "Latent", "hr_sampler_name": "Use same sampler",
        "override_settings": {"CLIP_stop_at_last_layers": 2, "sd_vae": "Automatic"}})
    assert answer.status_code == 200, answer.text
    png, = decoded(answer.json()["images"])
    recipe = json.loads(Image.open(io.BytesIO(png)).info["t2i_recipe"])
    assert (recipe["width"], recipe["hires_scale"], recipe["hires_denoise"], recipe["clip_skip"]) == (64, 2.0, 0.4, 2)
    assert Image.open(io.BytesIO(png)).size == (128, 128)
    off = client.post("/sdapi/v1/txt2img", json={"prompt": "a red circle", "steps": 4, "seed": 1, "hr_scale": 2})
    assert json.loads(off.json()["info"])["t2i_ignored"] == {"hr_scale": "hires fix is off (enable_hr is false)"}


def test_listings_name_models_and_loras_without_server_paths(client, studio):
    models = client.get("/sdapi/v1/sd-models").json()
    assert {m["title"] for m in models} >= {"embedded", "shapes-copy"}
    library = studio.engine.settings.lora_dir  # the engine's LoRA library (shared by the session's tests)
    library.mkdir(parents=True, exist_ok=True)
    lora = library / "api-test-ink.safetensors"
    lora.write_bytes(b"")  # listed by its name only; never loaded here
    try:
        listed = client.get("/sdapi/v1/loras").json()
    finally:
        lora.unlink()
    assert {"name": "api-test-ink", "alias": "api-test-ink", "path": "api-test-ink", "metadata": {}} in listed
    assert str(library) not in json.dumps(listed)
    assert "Euler a" in [s["name"] for s in client.get("/sdapi/v1/samplers").json()]
    assert [s["name"] for s in client.get("/sdapi/v1/schedulers").json()] == ["automatic", "karras"]
    assert client.get("/sdapi/v1/scripts").json() == {"txt2img": [], "img2img": []}
    assert "Watercolor" in [s["name"] for s in client.get("/sdapi/v1/prompt-styles").json()]
    assert [u["name"] for u in client.get("/sdapi/v1/latent-upscale-modes").json()] == ["Latent", "Latent (nearest)"]
    assert "Lanczos" in [u["name"] for u in client.get("/sdapi/v1/upscalers").json()]
    for route in ("sd-models", "loras", "options", "sd-vae", "upscalers", "embeddings"):
        assert str(studio.settings.data_dir) not in client.get(f"/sdapi/v1/{route}").text


def test_options_change_only_the_callers_own_model(client):
    one, other = {"X-T2I-Client": "one"}, {"X-T2I-Client": "other"}
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "shapes-copy"}, headers=one).json() == {}
    assert client.get("/sdapi/v1/options", headers=one).json()["sd_model_checkpoint"] == "shapes-copy"
    assert client.get("/sdapi/v1/options", headers=other).json()["sd_model_checkpoint"] == "embedded"
    refused = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "/etc"}, headers=other)
    assert refused.status_code == 400 and "unknown model" in refused.json()["detail"]
    refused = client.post("/sdapi/v1/options", json={"samples_save": False}, headers=other)
    assert refused.status_code == 422 and "samples_save" in refused.json()["detail"]


def test_png_info_reads_our_recipe(client):
    answer = client.post("/sdapi/v1/txt2img", json={"prompt": "a blue star", "seed": 4, "steps": 2})
    info = client.post("/sdapi/v1/png-info", json={"image": answer.json()["images"][0]}).json()
    assert info["parameters"]["Seed"] == 4 and info["parameters"]["Prompt"] == "a blue star"
    assert info["info"].startswith("a blue star\nSteps: 2")


@pytest.mark.parametrize("route, body, status, message", [
    ("txt2img", b"{prompt: ", 422, "not valid JSON"),
    ("txt2img", b"[1, 2]", 422, "JSON object"),
    ("txt2img", b'{"prompt": "a red circle", "cfg_scale": NaN}', 422, "NaN is not a JSON number"),
    ("txt2img", {"prompt": 5}, 422, "prompt: Input should be a valid string"),
    ("txt2img", {"prompt": "a red circle", "steps": "20"}, 422, "steps: Input should be a valid integer"),
    ("txt2img", {"prompt": "a red circle", "steps": -3}, 400, "steps must be from 1"),
    ("txt2img", {"prompt": "a red circle", "width": -64}, 400, "width must be"),
    ("txt2img", {"prompt": "a red circle", "seed": -5}, 400, "seed must be"),
    ("txt2img", {"prompt": "a red circle", "batch_size": 10_000}, 400, "the limit is"),
    ("txt2img", {"prompt": "a red circle", "sampler_name": "Nope"}, 400, "unknown sampler 'Nope'"),
    ("txt2img", {"prompt": "a red circle", "scheduler": "Exponential"}, 422, "t2i offers automatic, karras"),
    ("txt2img", {"prompt": "a red circle", "override_settings": {"sd_model_checkpoint": "nothing-here"}}, 400,
     "unknown model"),
    ("txt2img", {"prompt": "a red circle", "override_settings": {"sd_model_checkpoint": "/etc/passwd"}}, 400,
     "this server loads no other local paths"),
    ("txt2img", {"prompt": "a red circle", "restore_faces": True, "tiling": True}, 422,
     "restore_faces=True: face restoration is not available in t2i; tiling=True"),
    ("txt2img", {"prompt": "a red circle", "enable_hr": True, "hr_checkpoint_name": "other"}, 422,
     "hr_checkpoint_name='other'"),
    ("txt2img", {"prompt": "a red circle", "enable_hr": True, "hr_upscaler": "R-ESRGAN 4x+", "steps": 1}, 400,
     "unknown hires upscaler 'R-ESRGAN 4x+'"),
    ("txt2img", {"prompt": "a red circle", "override_settings": {"sd_vae": "nope.safetensors"}, "steps": 1}, 400,
     "unknown VAE 'nope.safetensors'"),
    ("txt2img", {"prompt": "a red circle", "alwayson_scripts": {"ControlNet": {"args": [{"enabled": True}]}}}, 422,
     "alwayson_scripts="),
    ("txt2img", {"prompt": "a red circle", "distilled_cfg_scale": 5.0, "steps": 1}, 400,
     "has no distilled guidance"),  # Forge's Flux field reaches the request: the embedded model has none
    ("txt2img", {"prompt": "a red circle", "override_settings": {"CLIP_stop_at_last_layers": 3}}, 400,
     "clip_skip must be 1"),
    ("txt2img", {"prompt": "a red circle", "override_settings": {"sd_model_checkpoint": 5}}, 422,
     "must be a model name"),
    ("txt2img", {"prompt": "a red circle", "hacks": 1, "nsfw": True}, 422, "unknown field(s) for this A1111 "
     "route: hacks, nsfw"),
    ("img2img", {"prompt": "a red circle", "init_images": ["data:text/html;base64,PGI+aGk8L2I+"]}, 400,
     "only data:image/...;base64, URLs"),
    ("img2img", {"prompt": "a red circle", "init_images": ["file:///etc/passwd"]}, 400, "does not fetch URLs"),
    ("img2img", {"prompt": "a red circle", "init_images": ["http://127.0.0.1:9/x.png"]}, 400, "does not fetch URLs"),
    ("img2img", {"prompt": "a red circle", "init_images": ["/etc/passwd"]}, 400, "not valid base64"),
    ("img2img", {"prompt": "a red circle", "init_images": ["QUFB" * 400_000]}, 400, "the limit is 1 MB"),
    ("img2img", {"prompt": "a red circle", "init_images": [data_url(Image.new("RGB", (8, 8)))] * 2}, 422,
     "exactly one init image"),
    ("img2img", {"prompt": "a red circle", "init_images": ["iVBORw0KGgo" + "A" * 41]}, 400, "could not be read"),
])
def test_hostile_input_is_a_clear_4xx_and_the_server_keeps_serving(client, studio, route, body, status, message):
    sent = dict(content=body) if isinstance(body, bytes) else dict(json=body)
    answer = client.post(f"/sdapi/v1/{route}", **sent)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]
    assert studio.admission.counts() == (0, 0)  # nothing left holding or waiting for a place
    assert client.get("/sdapi/v1/options").status_code == 200


def test_after_hostile_input_generation_still_works(client):
    for body in ({"prompt": 5}, {"prompt": "a red circle", "steps": -1}, {"prompt": "x", "tiling": True}):
        assert client.post("/sdapi/v1/txt2img", json=body).status_code in (400, 422)
    answer = client.post("/sdapi/v1/txt2img", json={"prompt": "a red circle", "steps": 4, "seed": 1})
    assert answer.status_code == 200 and len(answer.json()["images"]) == 1


@pytest.mark.parametrize("side, message", [(5000, "5000x5000; the limit is"),
                                           (30_000, "could not be read as an image (DecompressionBombError)")])
def test_a_decompression_bomb_is_refused_before_decoding(client, side, message):
    bomb = bomb_png(side, side)
    assert len(bomb) < 200_000  # small on the wire, huge decoded
    answer = client.post("/sdapi/v1/img2img", json={"prompt": "a red circle", "init_images": [
        "data:image/png;base64," + base64.b64encode(bomb).decode()]})
    assert answer.status_code == 400 and message in answer.json()["detail"]


def test_an_oversized_body_is_refused_before_it_is_read(client):
    answer = client.post("/sdapi/v1/img2img", content=b'{"prompt": "' + b"x" * (5 << 20) + b'"}')
    assert answer.status_code == 413 and "the limit is" in answer.json()["detail"]
