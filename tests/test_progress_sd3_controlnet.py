"""Progress over a whole SD3 ControlNet batch: its images run one call each (t2i/generation/run.py,
GLOBAL_RNG_PIPELINES), and Engine.generate's on_progress still counts steps 1..n_images*steps once, as a family whose
batch is one call counts 1..steps (the bar restarted at step 1 for each image)."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from t2i.generation.engine import Engine
from t2i.models.tiny import save_tiny_model
from t2i.models.tiny.controlnets import save_tiny_controlnet
from t2i.request import GenerationRequest
from t2i.settings import Settings

pytestmark = pytest.mark.slow  # building the tiny SD3 model and ControlNet takes about 6 s on 2 loaded cores
SIZE, STEPS = 64, 3


def _progress(engine: Engine, **fields) -> list[tuple[int, int, int, int]]:
    """(step, total_steps, batch, total_batches) of each progress event of one request."""
    seen = []
    request = GenerationRequest(prompt="a red circle", seed=5, steps=STEPS, width=SIZE, height=SIZE, **fields)
    engine.generate(request, on_progress=lambda e: seen.append((e.step, e.total_steps, e.batch, e.total_batches)))
    return seen


def test_an_sd3_controlnet_batch_reports_its_steps_over_all_its_images(tmp_path, engine):
    save_tiny_controlnet("sd3", tmp_path / "library" / "tiny-sd3", seed=2)
    sd3_engine = Engine(Settings(data_dir=tmp_path / "data", device="cpu", dtype="float32", default_model="embedded",
                                 entry_point_plugins=False, safety_allow_unchecked_images=True,
                                 controlnet_dirs=(tmp_path / "library",)))
    model = save_tiny_model("sd3", tmp_path / "sd3")
    control = Image.new("RGB", (SIZE, SIZE), "white")
    ImageDraw.Draw(control).rectangle((8, 8, 40, 40), fill="black")
    unit = {"image": control, "preprocessor": "none", "model": "tiny-sd3"}

    seen = _progress(sd3_engine, model=str(model), batch_size=3, batch_count=2, plugin_units={"controlnet": [unit]})
    # three images of three steps per batch: one bar of nine steps, then the second batch's
    assert seen == [(step, 9, batch, 2) for batch in (1, 2) for step in range(1, 10)]
    # as a batch made in one call reports (the embedded model: one call for its three images)
    assert _progress(engine, batch_size=3, batch_count=2) == [(s, STEPS, b, 2) for b in (1, 2) for s in (1, 2, 3)]
