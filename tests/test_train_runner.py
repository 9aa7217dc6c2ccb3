"""The runner (queue, cancel, child process), the CLI, and a fresh LoRA used at once through the engine."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from t2i.generation.engine import Engine
from t2i.request import GenerationRequest, RequestError
from t2i.train.config import config_from_preset
from t2i.train.dataset import prepare_dataset
from t2i.train.runner import TrainingRunner

from test_train_lora import _teal_images


@pytest.fixture
def train_env(tmp_path, monkeypatch):
    monkeypatch.setenv("T2I_TRAIN_LOCK", str(tmp_path / "train.lock"))
    monkeypatch.setenv("T2I_TRAIN_THREADS", "1")
    monkeypatch.setenv("T2I_DEVICE", "cpu")
    return tmp_path


@pytest.mark.slow  # trainers in subprocesses
def test_queue_cancel_generate_meanwhile_and_use_the_lora_at_once(train_env, settings):
    settings = dataclasses.replace(settings, data_dir=train_env / "data", lora_dir=train_env / "loras")
    runner = TrainingRunner(settings)
    dataset = prepare_dataset([_teal_images(train_env / "images")])
    small = dict(trigger="tlq", steps=8, batch_size=2, rank=4, alpha=4.0, checkpoint_every=4, sample_every=4,
                 prior_preservation=False, learning_rate=3e-3)
    first = runner.create_run(dataset, config_from_preset(name="teal_a", **small))
    second = runner.create_run(dataset, config_from_preset(name="teal_b", **small))
    assert runner.submit(first) == 0 and runner.submit(second) == 1
    assert runner.status(second).state == "queued" and runner.status(second).queue_position == 1
    runner.cancel(second)
    assert runner.status(second).state == "cancelled"
    with pytest.raises(RequestError, match="already queued or running"):
        runner.submit(first)

    # the server's engine keeps answering while the trainer process works: generations run back to back, each
    # between two reads of the run's status, until one began and ended with the run "running" and the trainer's
    # step moved on in between (or the run ended first, which fails below)
    engine = Engine(settings)
    request = GenerationRequest(prompt="tlq, a large red star", seed=5, steps=20)
    base = np.asarray(engine.generate(request).images[0].image, dtype=np.float32)
    during, latencies = [], []  # (trainer step before, after) of each generation inside "running"; seconds each
    before = runner.status(first)
    while before.state in ("running", "waiting") and not any(b < a for b, a in during):
        began = time.perf_counter()
        image = np.asarray(engine.generate(request).images[0].image, dtype=np.float32)
        latencies.append(time.perf_counter() - began)
        after = runner.status(first)
        assert np.array_equal(image, base)  # the same answer as before the training began
        if before.state == after.state == "running":
            during.append((before.step, after.step))
        before = after
    print(f"generations during training: trainer step before -> after {during}, ended with the run {before.state}; "
          f"{', '.join(f'{s:.2f}' for s in latencies)} s each")
    assert any(b < a for b, a in during), (during, before.state)

    status = runner.wait(first, timeout_s=600)
    assert status.state == "done", status.message
    assert status.step == 8 and [s for s, _ in status.losses] == list(range(1, 9))
    assert len(status.samples) == 2 and all(Path(p).exists() for p in status.samples)
    assert Path(status.lora) == settings.lora_dir / "teal_a.safetensors"

    # the LoRA plugin lists the new file with its trigger word, and the engine uses it by name or prompt tag
    lora = engine.plugins.plugins["lora"]
    assert "teal_a" in lora.choices(lora.params[0]) and lora.trigger_words("teal_a") == ("tlq",)
    by_unit = engine.generate(dataclasses.replace(request, plugin_units={"lora": [{"name": "teal_a", "weight": 1.0}]}))
    by_tag = engine.generate(dataclasses.replace(request, prompt="<lora:teal_a:1> tlq, a large red star"))
    unit_pixels = np.asarray(by_unit.images[0].image, dtype=np.float32)
    assert np.abs(unit_pixels - base).mean() > 0.5
    assert np.array_equal(unit_pixels, np.asarray(by_tag.images[0].image, dtype=np.float32))
    with pytest.raises(RequestError, match="already has 'teal_a'"):
        runner.create_run(dataset, config_from_preset(name="teal_a", **small))


@pytest.mark.slow  # the CLI and a trainer
def test_cli_trains_a_folder_and_prints_the_lora_last(train_env):
    images = _teal_images(train_env / "images", count=4)
    env = {**os.environ, "T2I_DATA_DIR": str(train_env / "data"),
           "T2I_LORA_DIR": str(train_env / "loras"), "T2I_ENTRY_POINT_PLUGINS": "0",
           "T2I_SAFETY_ALLOW_UNCHECKED": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "t2i", "train", "--images", str(images), "--name", "cli_teal",
                           "--trigger", "tlq", "--steps", "2", "--batch-size", "2", "--no-prior",
                           "--sample-every", "0"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path == train_env / "loras" / "cli_teal.safetensors" and path.exists()
    assert "step 2/2" in done.stderr
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    bad = subprocess.run([sys.executable, "-m", "t2i", "train", "--images", str(images), "--name", "cli_bad"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("error: broken.jpg could not")


def test_training_studio_checks_uploads_and_refuses_bad_tokens(tmp_path, settings):
    from t2i.plugins import PluginManager
    from t2i.safety.gate import SafetyGate
    from t2i.train.actions import TrainingStudio

    studio = TrainingStudio(dataclasses.replace(settings, data_dir=tmp_path / "data"),
                            SafetyGate(PluginManager(), settings))
    folder = _teal_images(tmp_path / "images", count=4)
    checked = studio.check_upload([str(p) for p in sorted(folder.iterdir())])
    assert len(checked.files) == 4 and all(Path(f).exists() for f in checked.files)
    assert sorted(checked.captions) == sorted(p.read_text() for p in folder.glob("*.txt"))
    with pytest.raises(RequestError, match="check the uploaded images first"):
        studio.start("../../etc", checked.captions, "quick style", "mine")
    with pytest.raises(RequestError, match="1 captions for 4 images"):
        studio.start(checked.token, ["only one"], "quick style", "mine")
    with pytest.raises(RequestError, match="upload some images"):
        studio.check_upload([])
