"""`python -m t2i generate` labels its PNGs as the app does: recipe, XMP, our chunk, watermark and C2PA as set."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from c2pa_helpers import make_c2pa_files
from t2i.recipes.outputs import save_result
from t2i.recipes.labels import AI_SOURCE_TYPE, LABEL_KEY, XMP_KEY, describe_labels, read_c2pa, read_label, read_watermark
from t2i.recipes.infotext import RECIPE_KEY
from t2i.recipes.pnginfo import read_png
from t2i.request import GenerationRequest

pytestmark = pytest.mark.slow  # the CLI in subprocesses

PROMPT = "a large blue square on a yellow background"


def cli(out, tmp_path, **env):
    """Run the CLI for PROMPT (seed 3, 8 steps) with extra env vars; the finished process."""
    base = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "T2I_DEVICE": "cpu", "T2I_ENTRY_POINT_PLUGINS": "0",
            "T2I_DATA_DIR": str(tmp_path / "data"),
            # as many threads as this process samples with: bytes are identical only at equal thread counts
            "OMP_NUM_THREADS": str(torch.get_num_threads())}
    return subprocess.run([sys.executable, "-m", "t2i", "generate", PROMPT, "-o", str(out), "--seed", "3",
                           "--steps", "8"], capture_output=True, text=True, timeout=300, env={**base, **env})


def text_chunks(data: bytes) -> dict:
    with Image.open(io.BytesIO(data)) as image:
        return {key: value for key, value in image.info.items() if isinstance(value, str)}


def test_cli_png_carries_the_apps_labels(engine, tmp_path):
    out = tmp_path / "out.png"
    done = cli(out, tmp_path)
    assert done.returncode == 0, done.stderr
    data = out.read_bytes()
    chunks = text_chunks(data)
    assert "Seed: 3" in chunks["parameters"] and read_png(data).form["prompt"] == PROMPT
    assert json.loads(chunks[RECIPE_KEY])["seed"] == 3
    assert read_label(data) == AI_SOURCE_TYPE
    assert json.loads(chunks[LABEL_KEY])["ai_generated"] is True
    assert describe_labels(data) == ["XMP digital source type: trainedAlgorithmicMedia"]  # watermark is off by default

    # the app's file for the same request: the same pixels and the same chunks, save the app's per-file id
    result = engine.generate(GenerationRequest(prompt=PROMPT, seed=3, steps=8))
    app_path, = save_result(result, tmp_path)
    app_chunks = text_chunks(app_path.read_bytes())
    assert app_chunks.pop("t2i_file_id") == app_path.name
    assert chunks == app_chunks
    assert chunks[XMP_KEY] == app_chunks[XMP_KEY]
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(app_path)))


def test_cli_png_has_watermark_and_c2pa_when_set(tmp_path):
    key, chain = make_c2pa_files(tmp_path)
    out = tmp_path / "marked.png"
    done = cli(out, tmp_path, T2I_WATERMARK="1", T2I_C2PA_KEY=str(key), T2I_C2PA_CERT=str(chain))
    assert done.returncode == 0, done.stderr
    data = out.read_bytes()
    with Image.open(out) as image:
        assert image.size == (256, 256)  # enlarged for the watermark
        assert read_watermark(image).matched == 48
    manifest = read_c2pa(data)
    assert manifest["validation_state"] == "Valid"
    assert manifest["signature_info"]["common_name"] == "t2i test signer"
    action, = next(a["data"]["actions"] for a in manifest["assertions"] if a["label"].startswith("c2pa.actions"))
    assert action["digitalSourceType"] == AI_SOURCE_TYPE
    assert describe_labels(data) == ["XMP digital source type: trainedAlgorithmicMedia",
                                     "C2PA manifest signed by t2i test signer (Valid)", "invisible watermark: detected"]
    assert read_png(data).form["seed"] == 3


@pytest.mark.parametrize("env, message", [({"T2I_C2PA_KEY": "/nowhere/key.pem"}, "set both"),
                                          ({"T2I_C2PA_KEY": "/nowhere/k.pem", "T2I_C2PA_CERT": "/nowhere/c.pem"},
                                           "No such file")])
def test_cli_refuses_half_configured_c2pa(tmp_path, env, message):
    out = tmp_path / "out.png"
    done = cli(out, tmp_path, **env)
    assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()
