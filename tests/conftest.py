"""Shared fixtures: the engine on the embedded model, and tiny SD/SDXL pipelines saved to local folders.

Lanes: `pytest -m "not slow"` is the fast lane (unit tests and the embedded model at a few steps, under
3 minutes on 2 cores); plain `pytest` runs everything. Mark a test `slow` (`pytestmark = pytest.mark.slow` at
the top of its module, or `@pytest.mark.slow` on the test) when it launches the app, a browser or a subprocess
(trainer, CLI), or takes more than a few seconds on 2 cores; `--durations=15` shows the candidates.

The tests run against this checkout installed with `pip install -e .`: the built-in plugins exist only as its
`t2i.plugins` entry points. Installed third-party plugins stay out (`entry_point_plugins=False`,
`T2I_ENTRY_POINT_PLUGINS=0` for launched apps).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download

import pytest
import torch

from t2i.generation.engine import Engine
from t2i.settings import Settings
from app_start import AppUrl, free_port, start_app
from tiny_components import clip_config, tiny_parts

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PLUGINS_DIR = Path(__file__).resolve().parent / "example_plugins"


def pytest_configure(config):
    """Stop at once when the tests would run another copy of t2i, or none of its built-in plugins."""
    import importlib.util

    import t2i

    plugins = importlib.util.find_spec("t2i_plugins")
    if Path(t2i.__file__).resolve().parent != ROOT / "t2i" or plugins is None \
            or Path(plugins.origin).resolve().parent != ROOT / "plugins":
        raise pytest.UsageError(f"t2i is not installed from {ROOT}: run `.venv/bin/pip install -e {ROOT}` first")


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> Settings:
    # installed (entry-point) plugins stay out: tests see the built-in plugins only. Discovery loads the
    # built-in image checker; tests that build a PluginManager of their own plugins get unchecked images
    # (the app refuses that unless its operator sets T2I_SAFETY_ALLOW_UNCHECKED=1; tests/test_safety_gate.py)
    return Settings(data_dir=tmp_path_factory.mktemp("t2i-data"), device="cpu", dtype="float32",
                    default_model="embedded", entry_point_plugins=False, safety_allow_unchecked_images=True)


@pytest.fixture(scope="session")
def engine(settings) -> Engine:
    return Engine(settings)


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory):
    """An SDXL-shaped pipeline (two text encoders, pooled embeddings) with random weights, saved to a folder."""
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    unet, vae, scheduler, tokenizer = tiny_parts(
        64, addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=80,
        transformer_layers_per_block=(1, 1))
    torch.manual_seed(1)
    pipe = StableDiffusionXLPipeline(
        vae=vae, unet=unet, scheduler=scheduler, tokenizer=tokenizer, tokenizer_2=tokenizer,
        text_encoder=CLIPTextModel(clip_config(tokenizer)),
        text_encoder_2=CLIPTextModelWithProjection(clip_config(tokenizer, projection_dim=32)))
    folder = tmp_path_factory.mktemp("tiny-sdxl")
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


@contextlib.contextmanager
def running_app(data_dir, port: int | None = None, **env):
    """The real app (`python app.py --port N`) on 127.0.0.1 with the embedded model and extra env vars; its URL (an
    AppUrl, whose `.app` reads the app's output), once the app says it serves (tests/app_start.py). `port`: a free
    one when None (a browser keeps localStorage per port, so a restart test names its port)."""
    port = free_port() if port is None else port
    env = {**os.environ, "T2I_DATA_DIR": str(data_dir), "T2I_DEVICE": "cpu", "T2I_MODEL": "embedded",
           "T2I_ENTRY_POINT_PLUGINS": "0", "T2I_RATE_LIMIT": "0", **env}
    # generous: a loaded machine imports torch + diffusers slowly
    app = start_app(ROOT / "app.py", port, env, timeout=600)
    url = AppUrl(f"http://127.0.0.1:{port}/")
    url.app = app
    try:
        yield url
    finally:
        app.process.terminate()
        app.process.wait(timeout=30)


@pytest.fixture(scope="session")
def launch_app():
    """running_app, for tests that need the app with settings of their own (e.g. extra plugin folders)."""
    return running_app


@pytest.fixture(scope="session")
def app_url(tmp_path_factory):
    """The real app on 127.0.0.1, running the embedded model."""
    # the README's example plugin, to test generated widgets
    with running_app(tmp_path_factory.mktemp("app-data"), T2I_PLUGIN_DIRS=str(EXAMPLE_PLUGINS_DIR)) as url:
        yield url


@pytest.fixture
def browser():
    """Headless Debian chromium driven by Playwright (the browser tests skip where chromium is missing)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()
