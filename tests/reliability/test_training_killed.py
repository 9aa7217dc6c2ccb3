"""A training process killed with SIGKILL, on the app path (the Train tab's API endpoints).

The server keeps generating correctly, the run's status says the trainer was killed, the machine-wide
training lock is free again (a new run starts and finishes), and no earlier output or LoRA changed.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import time
from pathlib import Path

import psutil
import pytest
from gradio_client import handle_file
from safetensors import safe_open

from app_calls import generate, output_files
from t2i.embedded.world import Scene, ShapeObject, render

pytestmark = pytest.mark.slow  # the real app and a trainer (reliability suite)

NORMAL = dict(prompt="a small green square in the top left on a black background", seed=8, steps=6)
TRIGGER = "zqk"


def library(data_dir: Path) -> dict[Path, str]:
    """Every file in the LoRA library, with its sha256."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (data_dir / "loras").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def checked(client, tmp_path_factory):
    """Three captioned shapes-world pictures, uploaded and checked (the token stays in the client's session):
    the caption table."""
    folder = tmp_path_factory.mktemp("train-images")
    files = []
    for index, (shape, colour) in enumerate([("circle", "red"), ("square", "yellow"), ("star", "white")]):
        render(Scene((ShapeObject(shape, colour, "large"),), "teal")).save(folder / f"{index}.png")
        (folder / f"{index}.txt").write_text(f"a large {colour} {shape}")
        files += [folder / f"{index}.png", folder / f"{index}.txt"]
    _, table, notes = client.predict([handle_file(str(f)) for f in files], api_name="/train_check")
    assert notes.startswith("3 images"), notes
    return table


def start(client, table, name: str, steps: int) -> str:
    run_id, state, _ = client.predict(table, "quick style", "(preset)", name, TRIGGER, steps,
                                      api_name="/train_start")
    assert state == "starting", state  # not queued: no other run holds the runner
    return run_id


def wait_for(client, run_id: str, pattern: str, timeout: float = 300) -> str:
    """Poll /train_status until its text matches `pattern`; the text."""
    deadline = time.time() + timeout
    while True:
        text = client.predict(run_id, api_name="/train_status")[0]
        if re.search(pattern, text):
            return text
        assert time.time() < deadline, f"run {run_id} never matched {pattern!r}: {text}"
        time.sleep(0.5)


def trainer_process(run_folder: Path) -> psutil.Process:
    """The trainer child process of one run (its run folder is on its command line)."""
    found = [p for p in psutil.process_iter(["cmdline"])
             if "t2i.train.lora_trainer" in (p.info["cmdline"] or []) and str(run_folder) in p.info["cmdline"]]
    assert len(found) == 1, found
    return found[0]


def test_a_killed_trainer_leaves_the_server_serving_and_the_lock_free(client, checked, reliability_data, report):
    reference = generate(client, **NORMAL)
    earlier_outputs, earlier_loras = output_files(reliability_data), library(reliability_data)
    assert earlier_loras  # the suite's tint_a and tint_b

    killed = start(client, checked, "killed_run", steps=400)
    wait_for(client, killed, r"\*\*running\*\* step [1-9]")  # past the class images, inside the training loop
    trainer = trainer_process(reliability_data / "training" / killed)
    os.kill(trainer.pid, signal.SIGKILL)
    status = wait_for(client, killed, r"\*\*interrupted\*\*")
    assert "the trainer was killed (signal 9)" in status and "press Resume to continue from" in status, status

    served = generate(client, **NORMAL)
    assert served.same_as(reference)

    # the lock died with the process: a new run gets it at once (never "waiting") and finishes
    fresh = start(client, checked, "after_kill", steps=1)
    done = wait_for(client, fresh, r"\*\*(done|failed|waiting)\*\*")
    assert done.startswith("**done** step 1/1"), done
    lora = reliability_data / "loras" / "after_kill.safetensors"
    with safe_open(str(lora), "pt") as weights:
        assert any("lora" in key for key in weights.keys())
    assert not list((reliability_data / "loras").glob("killed_run*"))  # no half-written LoRA of the killed run
    assert "after_kill" in str(client.predict(None, api_name="/lora_refresh"))

    intact = (all(output_files(reliability_data).get(p) == h for p, h in earlier_outputs.items())
              and all(library(reliability_data).get(p) == h for p, h in earlier_loras.items()))
    report["faults"].append(("training killed", intact and served.same_as(reference)))
    report["lost"].append(sum(output_files(reliability_data).get(p) != h for p, h in earlier_outputs.items())
                          + sum(library(reliability_data).get(p) != h for p, h in earlier_loras.items()))
    assert intact
    assert generate(client, **NORMAL).same_as(reference)
