"""Push to the Hugging Face Hub, everything up to the upload: the staged folder, the model card's front matter,
repo-id and token checks, and clear, quick errors when the Hub cannot be reached. No test calls the real Hub:
the unreachable and silent Hubs are local ports (one closed, one that never answers)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import huggingface_hub.constants as hub_constants
import pytest
import yaml
from diffusers import StableDiffusionPipeline

from t2i.plugins import PluginManager
from t2i.request import RequestError
from t2i.safety.gate import SafetyGate
from t2i.train.config import TrainingConfig, config_from_preset
from t2i.train.dataset import prepare_dataset
from t2i.train.export import card_front_matter, library_paths, model_card
from t2i.train.hub import HUB_WEIGHTS, check_repo_id, push_run, stage
from t2i.train.runner import TrainingRunner
from t2i.train.actions import TrainingStudio

from app_start import free_port
from test_train_lora import _teal_images

TOKEN = "hf_NotARealTokenButSecret1234567890"


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


@pytest.fixture(scope="module")
def finished(tmp_path_factory, settings):
    """A tiny finished run (2 steps): its runner and id."""
    tmp_path = tmp_path_factory.mktemp("hub")
    runner = TrainingRunner(dataclasses.replace(settings, data_dir=tmp_path / "data", lora_dir=tmp_path / "loras",
                                                hub_timeout_s=2.0))
    dataset = prepare_dataset([_teal_images(tmp_path / "images", count=3)])
    run_id = runner.create_run(dataset, config_from_preset(name="teal_hub", trigger="tlq", steps=2, batch_size=2,
                                                           rank=4, alpha=4.0, sample_every=0,
                                                           prior_preservation=False))
    with pytest.MonkeyPatch.context() as patch:  # the trainer child inherits these
        for name, value in (("T2I_TRAIN_LOCK", str(tmp_path / "train.lock")), ("T2I_TRAIN_THREADS", "1"),
                            ("T2I_DEVICE", "cpu")):
            patch.setenv(name, value)
        runner.submit(run_id)
        assert runner.wait(run_id, poll_s=0.2, timeout_s=600).state == "done"
    return runner, run_id


@pytest.fixture
def online(monkeypatch):
    """huggingface_hub as on a machine with HF_HUB_OFFLINE unset (conftest sets it for every test)."""
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)


@pytest.mark.slow  # a trainer in a subprocess (the `finished` run)
def test_staged_folder_holds_the_weights_the_kohya_file_and_a_card(finished, tmp_path):
    runner, run_id = finished
    status = runner.status(run_id)
    config = TrainingConfig.load(runner.folder(run_id) / "config.json")
    staged = stage(config, Path(status.lora), status.final_loss, tmp_path / "staged")
    library = library_paths(Path(status.lora).parent, "teal_hub")
    assert sorted(p.name for p in staged.iterdir()) == sorted([HUB_WEIGHTS, "teal_hub.safetensors", "README.md"])
    assert (staged / HUB_WEIGHTS).read_bytes() == library.diffusers.read_bytes()
    assert (staged / "teal_hub.safetensors").read_bytes() == library.kohya.read_bytes()

    card = (staged / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["instance_prompt"] == "tlq" and meta["library_name"] == "diffusers"
    assert {"lora", "text-to-image", "t2i"} <= set(meta["tags"])
    assert "base_model" not in meta  # "embedded" is no Hub id, and the Hub refuses any other value
    assert "| images | 3 |" in card and "| steps | 2 " in card and f"`{HUB_WEIGHTS}`" in card
    assert "`teal_hub.safetensors` (kohya/A1111 keys" in card

    # diffusers, given the repo folder and no file name, loads the diffusers weights (not the kohya file)
    from_repo, _ = StableDiffusionPipeline.lora_state_dict(str(staged))
    from_library, _ = StableDiffusionPipeline.lora_state_dict(str(library.diffusers))
    assert from_repo.keys() == from_library.keys()
    assert all(from_repo[k].equal(from_library[k]) for k in from_repo)


def test_card_names_a_hub_base_model_and_never_a_local_path(tmp_path):
    hub = config_from_preset(name="x1", trigger="tlq", base_model="someone/sd-base", method="dreambooth")
    meta = _front_matter(card_front_matter(hub))
    assert meta["base_model"] == "someone/sd-base" and "dreambooth" in meta["tags"]
    local = config_from_preset(name="x1", trigger="tlq", base_model=str(tmp_path / "my-model"))
    (tmp_path / "my-model").mkdir()
    card = model_card(local, 3, 2, None, "0.1")
    assert "base_model" not in _front_matter(card) and str(tmp_path) not in card and "`my-model`" in card


@pytest.mark.parametrize("repo_id, reason", [
    ("a/b/c", "must be in the form 'repo_name' or 'namespace/repo_name'"), ("my lora", "must use alphanumeric"),
    ("-x", "must use alphanumeric"), ("user/", "must use alphanumeric"), ("/name", "must use alphanumeric"),
    ("x" * 97, "maximum length is 96"), ("x.git", "cannot end by '.git'"), ("a--b", "Cannot have -- or ..")])
def test_bad_repo_ids_are_refused_before_any_network(repo_id, reason):
    with pytest.raises(RequestError, match="is not a Hub repo id: ") as caught:
        check_repo_id(repo_id)
    assert reason in str(caught.value) and str(caught.value).count(repo_id) == 1  # named once, with the rule


def test_good_repo_ids_and_a_missing_one():
    assert [check_repo_id(r) for r in ("me/my-lora", "lora_2.0", "Org-Name/x")] == ["me/my-lora", "lora_2.0",
                                                                                    "Org-Name/x"]
    with pytest.raises(RequestError, match="give a Hub repo id"):
        check_repo_id("")


@pytest.mark.slow  # a trainer in a subprocess (the `finished` run)
def test_no_token_is_a_clear_error(finished, monkeypatch, tmp_path, settings):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hub_constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))  # no saved login either
    runner, run_id = finished
    studio = TrainingStudio(runner.settings, SafetyGate(PluginManager(), settings), runner)
    with pytest.raises(RequestError, match="no Hugging Face token: set HF_TOKEN"):
        studio.push(run_id, "me/teal-hub")


@pytest.mark.slow  # a trainer in a subprocess (the `finished` run)
def test_an_unreachable_hub_is_a_quick_clear_error_without_the_token(finished, online, monkeypatch, settings):
    runner, run_id = finished
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr(hub_constants, "ENDPOINT", endpoint)  # what HF_ENDPOINT sets when huggingface_hub loads
    studio = TrainingStudio(runner.settings, SafetyGate(PluginManager(), settings), runner)
    began = time.perf_counter()
    with pytest.raises(RequestError) as caught:
        studio.push(run_id, "me/teal-hub", TOKEN)
    print(f"unreachable Hub: error after {time.perf_counter() - began:.2f} s: {caught.value}")
    # quick: the refused connection's own error, not T2I_HUB_TIMEOUT's "did not answer within 2 s", which push
    # raises instead once the Hub call has not returned in that time
    assert str(caught.value).startswith(f"could not reach the Hub at {endpoint} (")
    assert "Connection refused" in str(caught.value) and "did not answer" not in str(caught.value)
    assert "Nothing was uploaded" in str(caught.value) and TOKEN not in str(caught.value)


def _requests_held(listener: socket.socket) -> list[tuple[bytes, bool]]:
    """What a never-answering listener holds at this moment, without waiting: each connection in its backlog, the
    bytes its client has sent on it so far, and whether the client still holds it open."""
    listener.setblocking(False)
    held = []
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return held
        with connection:
            connection.setblocking(False)
            sent, still_open = b"", True
            while True:
                try:
                    chunk = connection.recv(65536)
                except BlockingIOError:  # all it has sent, and no close: it waits for the answer
                    break
                if not chunk:  # the client has closed it
                    still_open = False
                    break
                sent += chunk
            held.append((sent, still_open))


@pytest.mark.slow  # a trainer in a subprocess (the `finished` run)
def test_a_silent_hub_times_out(finished, online):
    runner, run_id = finished
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        began = time.perf_counter()
        # the fixture's T2I_HUB_TIMEOUT of 2 s, named by the error that only push's own timeout raises
        with pytest.raises(RequestError, match=re.escape(f"the Hub at {endpoint} did not answer within 2 s "
                                                         "(T2I_HUB_TIMEOUT); check the network. Nothing was uploaded")):
            push_run(runner, run_id, "me/teal-hub", TOKEN, endpoint=endpoint)
        waited = time.perf_counter() - began
        held = _requests_held(silent)
    print(f"silent Hub: gave up after {waited:.2f} s (T2I_HUB_TIMEOUT 2) holding {[r[:40] for r, _ in held]}")
    # it reached the Hub and sent its whole create-repo request, which is still unanswered with its connection open
    # (no HTTP error or timeout of the client's own ended the push: T2I_HUB_TIMEOUT did); no upload was asked for
    assert [(request.split(b"\r\n")[0], still_open) for request, still_open in held] == [
        (b"POST /api/repos/create HTTP/1.1", True)]
    head, _, body = held[0][0].partition(b"\r\n\r\n")
    assert f"content-length: {len(body)}".encode() in head.lower()
    assert (json.loads(body)["organization"], json.loads(body)["name"]) == ("me", "teal-hub")


@pytest.mark.slow  # a trainer in a subprocess (the `finished` run)
def test_offline_mode_and_unfinished_runs_are_refused(finished, tmp_path):
    runner, run_id = finished
    with pytest.raises(RequestError, match="HF_HUB_OFFLINE is set"):
        push_run(runner, run_id, "me/teal-hub", TOKEN)  # conftest's HF_HUB_OFFLINE=1
    fresh = runner.create_run(prepare_dataset([_teal_images(tmp_path / "images", count=3)]),
                              config_from_preset(name="not_trained", trigger="tlq"))
    with pytest.raises(RequestError, match="is interrupted; only a finished run's LoRA can be pushed"):
        push_run(runner, fresh, "me/teal-hub", TOKEN)


@pytest.mark.slow  # a trainer in a subprocess (the `finished` run)
def test_cli_push_checks_first_and_reports_an_unreachable_hub(finished, tmp_path):
    runner, run_id = finished
    settings = runner.settings
    endpoint = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "T2I_DATA_DIR": str(settings.data_dir),
           "T2I_LORA_DIR": str(settings.lora_dir), "T2I_ENTRY_POINT_PLUGINS": "0", "HF_HUB_OFFLINE": "0",
           "HF_ENDPOINT": endpoint, "HF_TOKEN_PATH": str(tmp_path / "no-token"), "T2I_HUB_TIMEOUT": "5"}
    env.pop("HF_TOKEN", None)
    env.pop("HUGGING_FACE_HUB_TOKEN", None)
    train = [sys.executable, "-m", "t2i", "train", "--images", str(tmp_path / "none"), "--name", "never"]

    bad = subprocess.run(train + ["--push-to-hub", "me/my lora"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1] == \
        "error: 'me/my lora' is not a Hub repo id: Repo id must use alphanumeric chars, '-', '_' or '.'. The name " \
        "cannot start or end with '-' or '.' and the maximum length is 96"
    no_token = subprocess.run(train + ["--push-to-hub", "me/lora"], env=env, capture_output=True, text=True,
                              timeout=120)
    assert no_token.returncode == 1 and "error: no Hugging Face token" in no_token.stderr
    assert not list((settings.data_dir / "training").glob("*never*"))  # refused before any run was made

    began = time.perf_counter()
    pushed = subprocess.run([sys.executable, "-m", "t2i", "train", "--resume", run_id, "--push-to-hub", "me/lora",
                             "--private"], env={**env, "HF_TOKEN": TOKEN}, capture_output=True, text=True, timeout=120)
    print(f"CLI push to an unreachable Hub: exit {pushed.returncode} after {time.perf_counter() - began:.1f} s")
    assert pushed.returncode == 1
    assert Path(pushed.stdout.strip().splitlines()[-1]) == settings.lora_dir / "teal_hub.safetensors"
    last = pushed.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: could not reach the Hub at {endpoint} (") and last.endswith(
        f"push again with --resume {run_id} --push-to-hub me/lora")
    assert TOKEN not in pushed.stdout + pushed.stderr
    stored = [p for p in settings.data_dir.rglob("*") if p.is_file()] + list(settings.lora_dir.rglob("*"))
    assert not any(TOKEN.encode() in p.read_bytes() for p in stored if p.is_file())
