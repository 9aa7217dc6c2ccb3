"""A new model family through the page, the A1111 API and the CLI (issue 25), on tiny folders in the model folder.

The page switches its size, steps, guidance and sampler boxes to the chosen model's family, and each front end makes
exactly the engine's image for the same request and seed (tiny random models make noise, so the check is identical
pixels); back on the embedded model the page's image still measures right with the analyzer.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t2i.eval.analyzer import analyze
from t2i.generation.engine import Engine
from t2i.models.tiny import save_tiny_model
from t2i.recipes.pnginfo import read_png
from t2i.request import REQUEST_FIELDS, GenerationRequest
from t2i.settings import Settings

from test_browser_page import CHROMIUM, WatchedPage, number_input, result_images, set_number, shot

gradio_client = pytest.importorskip("gradio_client")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")]
ROOT = Path(__file__).resolve().parent.parent
FLUX, SD3 = "tiny-flux1-dev", "tiny-sd3"
# a tiny folder of every family (and Flux.1 variant) in the model folder: name -> (family, variant)
MODELS = {f"tiny-{family}{'-' + variant if variant else ''}": (family, variant) for family, variant in (
    ("sd", ""), ("sdxl", ""), ("sd3", ""), ("flux1", "dev"), ("flux1", "schnell"), ("flux2", ""), ("zimage", ""),
    ("qwenimage", ""), ("chroma", ""))}
PROMPT = "a red circle on a white background"
# what the tiny Flux.1 dev runs everywhere: its family's guidance, a small size and few steps for speed
FLUX_RUN = dict(prompt=PROMPT, model=FLUX, steps=2, width=64, height=64, seed=5, cfg=1.0, sampler="Euler")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The app's data folder, whose model folder holds a tiny diffusers folder of every family."""
    data = tmp_path_factory.mktemp("families-app-data")
    for name, (family, variant) in MODELS.items():
        save_tiny_model(family, data / "models" / name, variant)
    return data


@pytest.fixture(scope="module")
def url(launch_app, data_dir):
    with launch_app(data_dir, T2I_API="1") as url:
        yield url


@pytest.fixture(scope="module")
def page_api(url):
    """The page's API, as gradio_client sees it."""
    return gradio_client.Client(url, verbose=False)


@pytest.fixture(scope="module")
def reference_engine(data_dir, tmp_path_factory) -> Engine:
    """The engine in this process, on the same model folder, for the reference images."""
    return Engine(Settings(data_dir=tmp_path_factory.mktemp("families-engine"), model_dir=data_dir / "models",
                           device="cpu", dtype="float32", entry_point_plugins=False,
                           safety_allow_unchecked_images=True))


def engine_pixels(engine: Engine, **fields) -> np.ndarray:
    request = GenerationRequest(**{name: tuple(v) if isinstance(v, list) else v for name, v in fields.items()
                                   if name in REQUEST_FIELDS})
    return np.asarray(engine.generate(request).images[0].image.convert("RGB"))


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def choose_model(page, name: str) -> None:
    """Pick `name` in the Model box as a user does: open the list, click the option."""
    page.locator("#model input").click()
    page.get_by_role("option", name=name, exact=True).click()


def sampler_options(page) -> list[str]:
    page.locator("#sampler input").click()
    options = page.locator("#sampler").get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return [text.split("\n")[-1] for text in options]  # the chosen one carries a check mark line


def wait_for_number(page, label: str, value: str) -> None:
    page.wait_for_function("([label, value]) => [...document.querySelectorAll('input[type=number]')].some("
                           "i => i.getAttribute('aria-label') === `number input for ${label}` && i.value === value)",
                           arg=[label, value], timeout=30_000)


def gallery_png(page, url: str) -> bytes:
    src = page.locator("#gallery img").first.get_attribute("src")
    return urllib.request.urlopen(src if src.startswith("http") else url.rstrip("/") + src).read()


def test_the_page_follows_the_chosen_family_and_makes_the_engines_image(browser, url, reference_engine):
    watched = WatchedPage(browser, url)
    page = watched.page
    distilled = number_input(page, "Distilled CFG scale")
    assert number_input(page, "Steps").input_value() == "20" and distilled.is_hidden()  # the embedded model's

    choose_model(page, FLUX)
    wait_for_number(page, "Steps", "28")  # Flux.1 dev's defaults, as Forge has them
    distilled.wait_for(state="visible")
    assert (number_input(page, "CFG scale").input_value(), distilled.input_value()) == ("1", "3.5")
    assert page.get_by_label("Width", exact=True).input_value() == "1024"
    assert sampler_options(page) == ["Euler", "UniPC"]
    shot(page, "page-family-flux1.png")
    # what the user sets after choosing the model is what runs
    set_number(page, "Steps", FLUX_RUN["steps"])
    for side in ("Width", "Height"):
        page.get_by_label(side, exact=True).fill(str(FLUX_RUN[side.lower()]))
    page.locator("#prompt textarea").fill(PROMPT)
    page.locator("#seed input").fill(str(FLUX_RUN["seed"]))
    page.locator("#generate").click()
    result_images(page, url, seed=FLUX_RUN["seed"])
    png = gallery_png(page, url)
    recipe = read_png(png).form
    assert {name: recipe[name] for name in FLUX_RUN} == FLUX_RUN and recipe["distilled_cfg"] == 3.5
    assert "Distilled CFG Scale: 3.5" in page.locator("#info textarea").input_value()
    assert np.array_equal(pixels(png), engine_pixels(reference_engine, **recipe))

    choose_model(page, SD3)  # SD3: real CFG, no distilled guidance, the size its configs give
    wait_for_number(page, "Steps", "28")
    wait_for_number(page, "CFG scale", "7")
    distilled.wait_for(state="hidden")
    assert page.get_by_label("Width", exact=True).input_value() == "64"
    set_number(page, "Steps", 2)
    page.locator("#seed input").fill("6")
    page.locator("#generate").click()
    result_images(page, url, seed=6)
    png = gallery_png(page, url)
    recipe = read_png(png).form
    assert (recipe["model"], recipe["steps"], recipe["cfg"], recipe["width"]) == (SD3, 2, 7.0, 64)
    assert np.array_equal(pixels(png), engine_pixels(reference_engine, **recipe))

    choose_model(page, "embedded")  # back to the declared defaults, every sampler, and a measured image
    wait_for_number(page, "CFG scale", "5")
    assert number_input(page, "Steps").input_value() == "20"
    assert page.get_by_label("Width", exact=True).input_value() == "0"
    assert len(sampler_options(page)) == len(REQUEST_FIELDS["sampler"].choices)
    page.locator("#prompt textarea").fill("a red circle in the top left on a blue background")
    page.locator("#seed input").fill("7")
    page.locator("#generate").click()
    analysis = analyze(result_images(page, url, seed=7)[0])
    assert analysis.background == "blue" and analysis.objects[0].colour == "red"
    assert analysis.objects[0].position == "top left"

    # a recipe link for the Flux model keeps its own values: only the boxes offered follow the model
    page.goto(f"{url}?prompt=a+blue+square&model={FLUX}&steps=3&cfg=2")
    distilled.wait_for(state="visible", timeout=120_000)
    wait_for_number(page, "Steps", "3")
    assert number_input(page, "CFG scale").input_value() == "2" and sampler_options(page) == ["Euler", "UniPC"]
    assert watched.problems == []


@pytest.mark.parametrize("name", list(MODELS))
def test_every_family_through_the_pages_endpoint_and_the_a1111_api_as_the_engine_does(url, page_api, reference_engine,
                                                                                      name):
    """The page's own /generate endpoint (what the Generate button calls) and /sdapi/v1/txt2img with the model in
    override_settings make the engine's pixels, family by family."""
    run = {**FLUX_RUN, "model": name}
    _, gallery, info, _ = page_api.predict(**run, api_name="/generate")
    page = Path(gallery[0]["image"] if isinstance(gallery[0], dict) else gallery[0][0]).read_bytes()
    body = {"prompt": PROMPT, "steps": run["steps"], "width": 64, "height": 64, "seed": run["seed"],
            "cfg_scale": run["cfg"], "sampler_name": "Euler", "override_settings": {"sd_model_checkpoint": name}}
    request = urllib.request.Request(url + "sdapi/v1/txt2img", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    answer = json.loads(urllib.request.urlopen(request, timeout=600).read())
    assert read_png(page).form["model"] == json.loads(answer["info"])["sd_model_name"] == name
    expected = engine_pixels(reference_engine, **run)
    assert np.array_equal(pixels(page), expected)
    assert np.array_equal(pixels(base64.b64decode(answer["images"][0])), expected)


def test_the_cli_runs_the_flux_folder_as_the_engine_does(data_dir, reference_engine, tmp_path):
    out = tmp_path / "flux.png"
    done = subprocess.run([sys.executable, "-m", "t2i", "generate", PROMPT, "--model", str(data_dir / "models" / FLUX),
                           "--steps", "2", "--width", "64", "--height", "64", "--seed", str(FLUX_RUN["seed"]),
                           "--cfg", "1", "-o", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "T2I_DEVICE": "cpu", "T2I_ENTRY_POINT_PLUGINS": "0",
                               "T2I_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Distilled CFG Scale: 3.5" in Image.open(out).info["parameters"]
    assert np.array_equal(pixels(out.read_bytes()), engine_pixels(reference_engine, **FLUX_RUN))
