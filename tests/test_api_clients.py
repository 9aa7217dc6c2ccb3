"""Real third-party clients against the real app (`app.py` with T2I_API=1) on 127.0.0.1: `webuiapi` speaks
/sdapi/v1 and the official `openai` package speaks /v1/images. Their images are measured, carry our recipe and
labels, and equal the page's endpoint (gradio_client /generate) byte for byte, but for its per-file id chunk."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image
from safetensors.torch import save_file

from api_helpers import png_bytes, without_chunk
from lora_helpers import UNET_TARGETS, random_lora_weights
from t2i.eval.analyzer import analyze
from t2i.recipes.labels import AI_SOURCE_TYPE, read_label
from t2i.recipes.pnginfo import read_png
from t2i.settings import EMBEDDED_MODEL_DIR

pytestmark = pytest.mark.slow  # the real app

webuiapi = pytest.importorskip("webuiapi")
openai = pytest.importorskip("openai")
gradio_client = pytest.importorskip("gradio_client")

ROOT = Path(__file__).resolve().parent.parent
GREEN_TRIANGLE = "a large green triangle at the bottom on a white background"


@pytest.fixture(scope="module")
def url(launch_app, tmp_path_factory):
    """The app with the APIs on, and an untrained LoRA 'ink' in its library."""
    data = tmp_path_factory.mktemp("api-app-data")
    (data / "loras").mkdir()
    unet = UNet2DConditionModel.from_pretrained(EMBEDDED_MODEL_DIR, subfolder="unet")  # a scratch copy
    torch.manual_seed(0)
    save_file(random_lora_weights(unet, "unet", UNET_TARGETS), data / "loras" / "ink.safetensors")
    with launch_app(data, T2I_API="1") as url:
        yield url


@pytest.fixture(scope="module")
def a1111(url):
    host, port = url.removeprefix("http://").strip("/").split(":")
    return webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler")


@pytest.fixture(scope="module")
def page_pngs(url):
    """The page's /generate endpoint for GREEN_TRIANGLE, seed 11, 20 steps, 2 images: its files' bytes."""
    _, gallery, _, _ = gradio_client.Client(url, verbose=False).predict(
        prompt=GREEN_TRIANGLE, seed=11, steps=20, batch_size=2, api_name="/generate")
    return [Path(item["image"] if isinstance(item, dict) else item[0]).read_bytes() for item in gallery]


def test_webuiapi_txt2img_batch_is_measured_and_equals_the_pages_bytes(a1111, page_pngs):
    result = a1111.txt2img(prompt=GREEN_TRIANGLE, seed=11, steps=20, batch_size=2, cfg_scale=5.0, width=64,
                           height=64)
    assert result.info["all_seeds"] == [11, 12] and len(result.images) == 2
    found = analyze(result.images[0])
    assert found.background == "white" and found.objects[0].colour == "green"
    pngs = [base64.b64decode(image) for image in result.json["images"]]
    assert [read_png(png).form["seed"] for png in pngs] == [11, 12] and read_label(pngs[1]) == AI_SOURCE_TYPE
    assert [without_chunk(png, "t2i_file_id") for png in page_pngs] == pngs


def test_openai_generate_is_measured_and_equals_the_pages_bytes(url, page_pngs):
    client = openai.OpenAI(base_url=f"{url}v1", api_key="unused-on-loopback")
    answer = client.images.generate(prompt=GREEN_TRIANGLE, n=2, size="64x64", response_format="b64_json",
                                    extra_body={"seed": 11, "steps": 20, "guidance_scale": 5.0})
    pngs = [base64.b64decode(item.b64_json) for item in answer.data]
    found = analyze(Image.open(io.BytesIO(pngs[1])))
    assert found.background == "white" and found.objects[0].colour == "green"
    assert [without_chunk(png, "t2i_file_id") for png in page_pngs] == pngs
    assert "embedded" in [model.id for model in client.models.list()]


def test_openai_edit_and_webuiapi_img2img_repaint_only_the_mask(url, a1111):
    init = Image.new("RGB", (64, 64), (250, 250, 250))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    outside = np.asarray(mask) == 0
    edited = openai.OpenAI(base_url=f"{url}v1", api_key="unused").images.edit(
        image=("init.png", png_bytes(init), "image/png"), mask=("mask.png", png_bytes(mask), "image/png"),
        prompt="a large red circle on a white background", size="64x64", extra_body={"seed": 2, "steps": 12})
    # webuiapi sends A1111's inpainting defaults (mask_blur 4, "only masked", masked content "fill"), which t2i
    # applies as A1111 does; a blur of 4 repaints a 4 px rim outside the mask, so this asks for a hard edge
    result = a1111.img2img(images=[init], mask_image=mask, prompt="a large red circle on a white background",
                           seed=2, steps=12, cfg_scale=5.0, denoising_strength=0.75, width=64, height=64,
                           mask_blur=0)
    for image in (Image.open(io.BytesIO(base64.b64decode(edited.data[0].b64_json))), result.image):
        pixels = np.asarray(image.convert("RGB"))
        assert np.array_equal(pixels[outside], np.asarray(init)[outside])
        assert np.abs(pixels[~outside].astype(int) - 250).mean() > 20
    assert read_png(base64.b64decode(result.json["images"][0])).extra["mode"] == "inpaint"


def test_webuiapi_listings_options_and_png_info(a1111):
    assert "embedded" in a1111.util_get_model_names()
    assert "Euler a" in a1111.util_get_sampler_names() and "karras" in a1111.util_get_scheduler_names()
    assert isinstance(a1111.get_loras(), list) and a1111.get_scripts() == {"txt2img": [], "img2img": []}
    assert a1111.set_options({"sd_model_checkpoint": "embedded"}) == {}
    assert a1111.util_get_current_model() == "embedded"
    image = a1111.txt2img(prompt="a blue star", seed=4, steps=2, width=64, height=64).image
    info = a1111.png_info(image)
    assert info.info.startswith("a blue star\nSteps: 2") and info.json["parameters"]["Seed"] == 4


def test_webuiapi_lora_tags_in_the_prompt_apply_the_library_lora(a1111):
    assert [lora["name"] for lora in a1111.get_loras()] == ["ink"]
    assert "/" not in json.dumps(a1111.get_loras())  # names, never server paths
    plain = a1111.txt2img(prompt="a red star on a blue background", seed=11, steps=3, width=64, height=64)
    tagged = a1111.txt2img(prompt="a red star on a blue background <lora:ink:1.0>", seed=11, steps=3, width=64,
                           height=64)
    assert "<lora:ink:1.0>" in tagged.info["infotexts"][0] and "Lora hashes" in tagged.info["infotexts"][0]
    assert np.abs(np.asarray(tagged.image, dtype=int) - np.asarray(plain.image, dtype=int)).mean() > 1


def test_webuiapi_progress_shows_the_job_and_interrupt_stops_it(a1111):
    outcome = {}
    job = threading.Thread(target=lambda: outcome.update(result=a1111.txt2img(
        prompt="a blue square", seed=1, steps=150, width=64, height=64)))
    job.start()
    try:
        progress = a1111.get_progress()
        while not progress["current_image"]:  # waits for the job's first preview (it runs 150 steps)
            assert job.is_alive(), "the job ended before it showed a preview"
            progress = a1111.get_progress()
        assert progress["state"]["job_count"] == 1 and 0 < progress["progress"] < 1
        assert a1111.interrupt() == {"interrupted": 1}
    finally:
        job.join()
    assert outcome["result"].images == [] and outcome["result"].info["interrupted"] is True


def test_a_start_beyond_loopback_without_a_key_refuses(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "app.py"), "--api", "--host", "0.0.0.0"], capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "T2I_DATA_DIR": str(tmp_path),
                                                       "HF_HUB_OFFLINE": "1"})
    assert done.returncode != 0 and "set T2I_API_KEY" in done.stderr
