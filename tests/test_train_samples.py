"""Samples during training come from the family's own pipeline with the LoRA as trained so far: on a tiny Flux.1-dev
model the run's final sample is FluxPipeline's image with the exported LoRA (same seed, steps, size and T5 length),
the sample after step 1 differs from it, and sampling leaves the training as it was (the same LoRA without samples);
T5 left the training device before the samples were made.
(SDXL: tests/test_train_multiprocess.py checks its samples the same way, on 2 processes.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from t2i.models.tiny import save_tiny_model
from t2i.train.quantised_base import base_bytes
from train_family_helpers import RESOLUTION, RUN, load_pipeline, same_tensors
from test_train_lora import _events, _make_run

pytestmark = pytest.mark.slow  # a training run


def test_flux_samples_are_the_flux_pipelines_images_with_the_lora(tmp_path, monkeypatch):
    from t2i.train.lora_trainer import train

    for name, value in (("T2I_TRAIN_LOCK", str(tmp_path / "train.lock")), ("T2I_TRAIN_THREADS", "1"),
                        ("T2I_DEVICE", "cpu")):
        monkeypatch.setenv(name, value)
    model = save_tiny_model("flux1", tmp_path / "model", variant="dev")
    settings = {**RUN, "base_model": str(model), "family": "flux1", "steps": 2, "checkpoint_every": 100}
    run = _make_run(tmp_path / "sampled", **{**settings, "sample_every": 1})
    unsampled = _make_run(tmp_path / "unsampled", **{**settings, "sample_every": 0})
    threads = torch.get_num_threads()
    try:
        lora = train(run, tmp_path / "loras")
        assert same_tensors(lora, train(unsampled, tmp_path / "loras-unsampled"))
    finally:
        torch.set_num_threads(threads)  # the trainer sets its own
    events = _events(run)
    first = next(e for e in events if e["event"] == "sample" and e["step"] == 1)
    done = next(e for e in events if e["event"] == "done")

    pipe = load_pipeline(model)
    assert type(pipe).__name__ == "FluxPipeline"
    # T5 left the training device once the prompts were encoded, so these samples were made without it
    start = next(e for e in events if e["event"] == "start")
    assert start["released_encoders"] == ["text_encoder_2"]
    assert start["device_bytes"]["before_release"] - start["device_bytes"]["after_release"] == \
        base_bytes(pipe.text_encoder_2)
    pipe.load_lora_weights(str(lora))
    # dev: 20 steps; T5 at diffusers' dev length, capped by the tokenizer (as the trainer's sample call)
    expected = pipe(done["prompts"][0], num_inference_steps=20, generator=torch.Generator().manual_seed(0),
                    width=RESOLUTION, height=RESOLUTION,
                    max_sequence_length=min(512, pipe.tokenizer_2.model_max_length)).images[0]
    final = np.asarray(Image.open(done["images"][0]).convert("RGB"))
    assert np.array_equal(final, np.asarray(expected))
    after_one_step = np.asarray(Image.open(first["images"][0]).convert("RGB"), dtype=float)
    assert np.abs(after_one_step - final).mean() > 1.0  # the samples follow the LoRA as it trains
