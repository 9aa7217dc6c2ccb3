"""Multi-process training (T2I_TRAIN_PROCESSES=2, gloo on CPU) on the embedded model, as the runner starts it: the
launcher killed with SIGKILL after a checkpoint takes its ranks with it, Resume finishes at the configured step,
each step is logged once per attempt, both ranks end with the same LoRA (text encoder included), and the LoRA is
in the library.

torch's rendezvous store (TCPStore) listens on every interface, whatever address it is given (checked with `ss`),
so the test runs itself again inside a loopback-only network namespace (t2i.ray.loopback)."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys

import pytest
from safetensors import safe_open

from t2i.embedded.world import SHAPES, Scene, ShapeObject, render
from t2i.train.config import config_from_preset
from t2i.train.dataset import prepare_dataset
from t2i.train.runner import TrainingRunner, trained_elsewhere

from test_train_resume import _until

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


def test_two_processes_resume_after_kill_and_end_with_equal_weights(request, tmp_path):
    """Run the body below in a loopback-only network namespace."""
    from t2i.ray.loopback import loopback_command, loopback_environment, only_loopback, unavailable_reason
    if only_loopback():
        _two_processes_resume_after_kill_and_end_with_equal_weights(request.getfixturevalue("runner"), tmp_path)
        return
    if reason := unavailable_reason():
        pytest.skip(reason)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::{request.node.name}"]
    done = subprocess.run(loopback_command(command), env=loopback_environment(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout, done.stdout[-2000:]


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
