"""Multi-process training (T2I_TRAIN_PROCESSES=2, gloo on CPU) on the embedded model, as the runner starts it: the
launcher killed with SIGKILL after a checkpoint takes its ranks with it, Resume finishes at the configured step,
each step is logged once per attempt, both ranks end with the same LoRA (text encoder included), and the LoRA is
in the library. The same on a tiny SDXL model (both text encoders trained): resumed from a checkpoint, it ends bit
for bit where the run straight through ends, both ranks agree, and its sample is the SDXL pipeline's image with the
exported LoRA.

torch's rendezvous store (TCPStore) listens on every interface, whatever address it is given (checked with `ss`),
so the test runs itself again inside a loopback-only network namespace (t2i.ray.loopback)."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys

import pytest
from safetensors import safe_open

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from t2i.embedded.world import SHAPES, Scene, ShapeObject, render
from t2i.models.tiny import save_tiny_model
from t2i.train.config import config_from_preset
from t2i.train.dataset import prepare_dataset
from t2i.train.launch import trainer_command, trainer_environment
from t2i.settings import Settings
from t2i.train.runner import TrainingRunner, trained_elsewhere

from test_train_lora import _env, _events, _make_run
from test_train_resume import _until
from train_family_helpers import RUN, load_pipeline, same_tensors

pytestmark = pytest.mark.slow  # two trainer launches of two processes each

STEPS = 6


@pytest.fixture
def runner(tmp_path, monkeypatch, settings):
    monkeypatch.setenv("T2I_TRAIN_LOCK", str(tmp_path / "train.lock"))
    monkeypatch.setenv("T2I_TRAIN_THREADS", "2")  # one per process
    monkeypatch.setenv("T2I_DEVICE", "cpu")
    return TrainingRunner(dataclasses.replace(settings, data_dir=tmp_path / "data", lora_dir=tmp_path / "loras",
                                              train_processes=2))


def _dataset(folder):
    folder.mkdir(parents=True)
    rng = random.Random(5)
    for i in range(4):
        shape, colour = rng.choice(SHAPES), rng.choice(["red", "yellow", "white"])
        render(Scene((ShapeObject(shape, colour, "large"),), "teal")).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"a large {colour} {shape}")
    return prepare_dataset([folder])


def _in_loopback(request, body) -> None:
    """Run `body` here when this process sees only loopback, else this test again in a loopback-only namespace."""
    from t2i.ray.loopback import loopback_command, loopback_environment, only_loopback, unavailable_reason
    if only_loopback():
        body()
        return
    if reason := unavailable_reason():
        pytest.skip(reason)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::{request.node.name}"]
    done = subprocess.run(loopback_command(command), env=loopback_environment(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout, done.stdout[-2000:]


def test_two_processes_resume_after_kill_and_end_with_equal_weights(request, tmp_path):
    _in_loopback(request, lambda: _two_processes_resume_after_kill_and_end_with_equal_weights(
        request.getfixturevalue("runner"), tmp_path))


def test_sdxl_on_two_processes_resumes_bit_for_bit_and_samples_with_its_pipeline(request, tmp_path):
    _in_loopback(request, lambda: _sdxl_on_two_processes(tmp_path))


def _two_processes_resume_after_kill_and_end_with_equal_weights(runner, tmp_path):
    config = config_from_preset(name="teal2p", trigger="tlq", steps=STEPS, batch_size=1, rank=2, alpha=2.0,
                                checkpoint_every=2, sample_every=0, prior_preservation=False,
                                train_text_encoder=True)
    run_id = runner.create_run(_dataset(tmp_path / "images"), config)
    runner.submit(run_id)
    launcher = runner._process
    _until(lambda: runner.status(run_id).checkpoint or runner.status(run_id).finished, "the first checkpoint")
    os.kill(launcher.pid, signal.SIGKILL)
    folder = runner.folder(run_id)
    launcher.wait(timeout=60)  # blocks until the launcher process is gone
    _until(lambda: not runner.is_active(run_id), "the runner to see the launcher end")
    _until(lambda: not trained_elsewhere(folder), "its ranks to end with it (they hold the run's lock)", 60)
    killed = runner.status(run_id)
    assert killed.state == "interrupted" and killed.resumable and killed.step < STEPS, killed

    runner.resume(run_id)
    done = runner.wait(run_id, poll_s=0.1, timeout_s=600)
    assert done.state == "done" and done.step == STEPS, done
    assert done.resumed_from == killed.checkpoint >= 2

    events = [json.loads(line) for line in (folder / "progress.jsonl").read_text().splitlines()]
    starts = [i for i, event in enumerate(events) if event["event"] == "start"]
    assert len(starts) == 2 and all(events[i]["processes"] == 2 for i in starts)
    for begin, end in zip(starts, starts[1:] + [len(events)]):  # within each attempt, every step once, in order
        steps = [event["step"] for event in events[begin:end] if event["event"] == "step"]
        assert steps == list(range(events[begin]["step"] + 1, events[begin]["step"] + 1 + len(steps)))
    assert steps[-1] == STEPS
    final = next(event for event in events if event["event"] == "done")
    assert len(final["rank_weights_sha256"]) == 2 and len(set(final["rank_weights_sha256"])) == 1

    with safe_open(done.lora, "pt") as lora:
        keys = list(lora.keys())
    assert any(key.startswith("unet.") for key in keys) and any(key.startswith("text_encoder.") for key in keys)


def _launch(run: Path, lora_dir: Path, tmp_path: Path) -> subprocess.Popen:
    """The trainer on 2 processes, launched as the runner launches it."""
    settings = dataclasses.replace(Settings(), train_processes=2, train_accelerate_config="")
    return subprocess.Popen(trainer_command(run, lora_dir, settings),
                            env={**trainer_environment(settings), **_env(tmp_path), "T2I_TRAIN_THREADS": "2"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(process: subprocess.Popen) -> Path:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return Path(out.strip().splitlines()[-1])


def _sdxl_on_two_processes(tmp_path):
    model = save_tiny_model("sdxl", tmp_path / "model")
    # 4 steps, a checkpoint at 2, samples only at the end; both text encoders train (SDXL's first one leaves its
    # last layer's LoRA without a gradient, which DDP must be told about)
    settings = {**RUN, "base_model": str(model), "family": "sdxl", "steps": 4, "checkpoint_every": 2,
                "batch_size": 1, "train_text_encoder": True, "text_encoder_lr": 1e-3}
    straight = _make_run(tmp_path / "straight", **settings)
    lora = _finished(_launch(straight, tmp_path / "loras-straight", tmp_path))

    # the same run stopped after its checkpoint at step 2 (a kill of the launcher is tested above): the run folder
    # as it was then, and the trainer started on it again
    resumed_run = tmp_path / "resumed" / "run"
    shutil.copytree(straight / "dataset", resumed_run / "dataset")
    shutil.copy(straight / "config.json", resumed_run / "config.json")
    shutil.copytree(straight / "checkpoints" / "step-000002", resumed_run / "checkpoints" / "step-000002")
    resumed = _finished(_launch(resumed_run, tmp_path / "loras-resumed", tmp_path))

    starts = [event for run in (straight, resumed_run) for event in _events(run) if event["event"] == "start"]
    assert [(s["step"], s["resumed"], s["processes"]) for s in starts] == [(0, False, 2), (2, True, 2)]
    for run in (straight, resumed_run):
        done = [event for event in _events(run) if event["event"] == "done"][-1]
        assert len(done["rank_weights_sha256"]) == 2 and len(set(done["rank_weights_sha256"])) == 1
    assert same_tensors(lora, resumed)  # the optimizer state and both ranks' generators: all restored
    with safe_open(lora, "pt") as handle:
        assert {key.split(".")[0] for key in handle.keys()} == {"unet", "text_encoder", "text_encoder_2"}
        assert handle.metadata()["t2i_family"] == "sdxl"

    # the sample the run shows is the SDXL pipeline's image with the exported LoRA (same seed, steps and size)
    done = [event for event in _events(straight) if event["event"] == "done"][-1]
    pipe = load_pipeline(model)
    pipe.load_lora_weights(str(lora))
    expected = pipe(done["prompts"][0], num_inference_steps=20, generator=torch.Generator().manual_seed(0),
                    width=RUN["resolution"], height=RUN["resolution"]).images[0]
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert np.array_equal(np.asarray(Image.open(done["images"][0]).convert("RGB")), np.asarray(expected))
