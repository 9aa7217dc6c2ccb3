"""Resume, as a user does it: start a run, cancel it after a checkpoint, press Resume (or `train --resume`), and
get the configured step count, a message saying where it continued, and the LoRA in the library."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open

from t2i.plugins import PluginManager
from t2i.request import RequestError
from t2i.safety.gate import SafetyGate
from t2i.train.config import config_from_preset
from t2i.train.dataset import prepare_dataset
from t2i.train.runner import TrainingRunner, read_status
from t2i.train.actions import TrainingStudio

from app_start import free_port
from test_train_hub import TOKEN
from test_train_lora import _events, _teal_images

SMALL = dict(batch_size=2, rank=4, alpha=4.0, checkpoint_every=2, sample_every=0, prior_preservation=False)


@pytest.fixture
def train_env(tmp_path, monkeypatch, settings):
    """Settings with this test's own data and LoRA folders, a private training lock and one training thread."""
    monkeypatch.setenv("T2I_TRAIN_LOCK", str(tmp_path / "train.lock"))
    monkeypatch.setenv("T2I_TRAIN_THREADS", "1")
    monkeypatch.setenv("T2I_DEVICE", "cpu")
    return dataclasses.replace(settings, data_dir=tmp_path / "data", lora_dir=tmp_path / "loras")


def _until(predicate, what: str, timeout: float = 300, poll: float = 0.05):
    deadline = time.time() + timeout
    while not (value := predicate()):
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)
    return value


def _cancel_after_first_checkpoint(runner: TrainingRunner, run_id: str) -> int:
    """Cancel the running run as soon as a checkpoint is on disk; the step it had reached."""
    _until(lambda: runner.status(run_id).checkpoint or runner.status(run_id).finished, "the first checkpoint")
    runner.cancel(run_id)
    _until(lambda: not runner.is_active(run_id), "the trainer to stop")
    status = runner.status(run_id)
    assert status.state == "cancelled" and status.step < status.steps, status  # stopped mid-run
    return status.step


@pytest.mark.slow  # trainers in subprocesses
def test_cancel_then_resume_in_the_studio_reaches_the_configured_steps(train_env, tmp_path):
    studio = TrainingStudio(train_env, SafetyGate(PluginManager(), train_env))
    folder = _teal_images(tmp_path / "images", count=4)
    checked = studio.check_upload([str(p) for p in sorted(folder.iterdir())])
    run_id, position = studio.start(checked.token, checked.captions, "quick style", "teal_resume", "tlq", steps=12,
                                    **SMALL)
    assert position == 0
    stopped_at = _cancel_after_first_checkpoint(studio.runner, run_id)

    cancelled = studio.status(run_id)
    checkpoint = cancelled.checkpoint
    assert 2 <= checkpoint <= stopped_at and checkpoint % 2 == 0
    assert cancelled.message == f"cancelled at step {stopped_at}; press Resume to continue from the checkpoint " \
                                f"at step {checkpoint}"
    assert [run.run_id for run in studio.resumable_runs([run_id, "0" * 16])] == [run_id]
    assert studio.resumable_runs([]) == []  # only the runs a caller names: another user's list is empty

    assert studio.resume(run_id) == 0
    with pytest.raises(RequestError, match="is already (queued|waiting|running)"):
        studio.resume(run_id)
    done = studio.runner.wait(run_id, poll_s=0.2, timeout_s=600)
    print(f"cancelled at step {stopped_at}, resumed from the checkpoint at step {checkpoint}, finished at "
          f"{done.step}/{done.steps}")
    assert done.state == "done", done.message
    assert (done.step, done.steps) == (12, 12)
    assert f"(resumed from the checkpoint at step {checkpoint})" in done.message
    assert [step for step, _ in done.losses] == list(range(1, 13))  # nothing repeated, nothing skipped
    starts = [e for e in _events(studio.runner.folder(run_id)) if e["event"] == "start"]
    assert [(e["step"], e["resumed"]) for e in starts] == [(0, False), (checkpoint, True)]
    assert [e["step"] for e in _events(studio.runner.folder(run_id)) if e["event"] == "step"][-1] == 12

    lora = Path(done.lora)
    assert lora == train_env.lora_dir / "teal_resume.safetensors"
    with safe_open(str(lora), "pt") as handle:
        assert handle.metadata()["t2i_steps"] == "12"
    plugin = PluginManager.discover(train_env).plugins["lora"]
    assert "teal_resume" in plugin.choices(plugin.params[0]) and plugin.trigger_words("teal_resume") == ("tlq",)

    # a finished run is no longer offered, and Resume says why
    assert studio.resumable_runs([run_id]) == []
    with pytest.raises(RequestError, match="has already finished"):
        studio.resume(run_id)
    with pytest.raises(RequestError, match="unknown training run"):
        studio.resume(run_id[:-6] + "000000")
    with pytest.raises(RequestError, match="unknown training run"):
        studio.resume("../../etc")


@pytest.mark.slow  # a trainer in a subprocess
def test_a_run_that_failed_for_good_is_not_resumable(train_env, tmp_path):
    runner = TrainingRunner(train_env)
    dataset = prepare_dataset([_teal_images(tmp_path / "images", count=3)])
    run_id = runner.create_run(dataset, config_from_preset(name="no_model", trigger="tlq", steps=2,
                                                           base_model=str(tmp_path / "missing-model"), **SMALL))
    runner.submit(run_id)
    failed = runner.wait(run_id, poll_s=0.2, timeout_s=300)
    assert failed.state == "failed" and "unknown model" in failed.message, failed.message
    assert not failed.resumable
    studio = TrainingStudio(train_env, SafetyGate(PluginManager(), train_env), runner)
    assert "press Resume" not in studio.status(run_id).message and studio.resumable_runs([run_id]) == []
    with pytest.raises(RequestError, match="resuming would fail the same way .*unknown model"):
        studio.resume(run_id)


@pytest.mark.slow  # the CLI and a trainer
def test_cli_resume_continues_a_cancelled_run_and_prints_the_lora_last(train_env, tmp_path):
    runner = TrainingRunner(train_env)
    dataset = prepare_dataset([_teal_images(tmp_path / "images", count=3)])
    run_id = runner.create_run(dataset, config_from_preset(name="cli_resume", trigger="tlq", steps=10, **SMALL))
    runner.submit(run_id)
    _cancel_after_first_checkpoint(runner, run_id)
    checkpoint = runner.status(run_id).checkpoint

    env = {**os.environ, "T2I_DATA_DIR": str(train_env.data_dir),
           "T2I_LORA_DIR": str(train_env.lora_dir), "T2I_ENTRY_POINT_PLUGINS": "0", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "t2i", "train", "--resume", run_id]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # while the CLI's trainer holds the run, another front end (this process) sees it running and cannot resume it
    _until(lambda: runner.status(run_id).state == "running" or process.poll() is not None, "the CLI's trainer")
    elsewhere = runner.status(run_id)  # the trainer loads the model for seconds while it holds the run
    assert (elsewhere.state, elsewhere.message) == ("running", "trained by another process on this machine")
    with pytest.raises(RequestError, match="is already running"):
        runner.resume(run_id)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    assert Path(out.strip().splitlines()[-1]) == train_env.lora_dir / "cli_resume.safetensors"
    assert f"resumed from the checkpoint at step {checkpoint}" in err and "step 10/10" in err
    assert read_status(runner.folder(run_id), run_id).step == 10

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and again.stderr.strip().splitlines()[-1].startswith(
        f"error: run {run_id} has already finished")


@pytest.mark.slow  # the real app and a trainer
def test_train_tab_api_cancel_resume_and_push(launch_app, tmp_path):
    """The Train tab's endpoints as a client uses them: start, cancel after a checkpoint, pick the run from the
    list of stopped runs, resume, finish; then a push that cannot reach the Hub says so."""
    from gradio_client import Client, handle_file

    folder = _teal_images(tmp_path / "images", count=3)
    port = free_port()
    env = dict(T2I_TRAIN_LOCK=str(tmp_path / "train.lock"), T2I_TRAIN_THREADS="1", HF_HUB_OFFLINE="0",
               HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_TOKEN="", HF_TOKEN_PATH=str(tmp_path / "no-token"))
    with launch_app(tmp_path / "app-data", **env) as url:
        client = Client(url, verbose=False)
        _, table, notes = client.predict([handle_file(str(p)) for p in sorted(folder.iterdir())],
                                         api_name="/train_check")
        assert notes.startswith("3 images"), notes
        for model, error in [("/etc", "unknown model '/etc': choose 'embedded', a model from the server's model "
                                      "folder"), ("../models", "unknown model '../models'")]:
            with pytest.raises(Exception, match=re.escape(error)):  # no server path as the base model
                client.predict(table, "quick style", "(preset)", "tab_model", "tlq", 12, 2, base_model=model,
                               api_name="/train_start")
        run_id, state, _ = client.predict(table, "quick style", "(preset)", "tab_resume", "tlq", 12, 2,
                                          base_model="embedded", api_name="/train_start")
        assert state == "starting"
        status = lambda: client.predict(run_id, api_name="/train_status")[0]  # noqa: E731
        _until(lambda: re.match(r"\*\*running\*\* step ([3-9]|1[01])/12", status()), "a step after a checkpoint",
               poll=0.2)
        cancelled = client.predict(run_id, api_name="/train_cancel")[0]
        assert re.fullmatch(r"\*\*cancelled\*\*: cancelled at step \d+; press Resume to continue from the "
                            r"checkpoint at step \d+", cancelled), cancelled
        checkpoint = int(cancelled.rsplit(" ", 1)[1])
        # the page remembers the run in the browser (encrypted localStorage), then lists it among the stopped runs
        known = client.predict(run_id, ["0" * 16], api_name="/train_remember")
        assert known == ["0" * 16, run_id]
        stopped = client.predict("", known, api_name="/train_runs")
        assert stopped["value"] == "" and [value for _, value in stopped["choices"]] == [run_id]
        assert stopped["choices"][0][0].startswith("tab_resume: step ") and "cancelled" in stopped["choices"][0][0]
        assert client.predict("", [], api_name="/train_runs")["choices"] == []  # another browser sees none of it
        assert client.predict("", {"x": run_id}, api_name="/train_runs")["choices"] == []  # not a list: no runs
        assert client.predict(run_id, [], api_name="/train_runs")["value"] == run_id  # the one in the Run box
        with pytest.raises(Exception, match="unknown training run"):
            client.predict("20990101-000000-nothing-000000", "", api_name="/train_resume")

        resumed_id, resumed, *_ = client.predict(run_id, "", api_name="/train_resume")
        assert (resumed_id, resumed) == (run_id, "resuming")
        done = _until(lambda: (text := status()).startswith(("**done**", "**failed**")) and text, "the end",
                      timeout=600, poll=0.5)
        # the LoRA by its library name, not where the server keeps it
        assert done == ("**done** step 12/12: saved to the LoRA library as tab_resume "
                        f"(resumed from the checkpoint at step {checkpoint})"), done
        with pytest.raises(Exception, match="has already finished"):
            client.predict(run_id, "", api_name="/train_resume")
        assert client.predict(run_id, known, api_name="/train_runs")["choices"] == []  # no longer a stopped run

        with pytest.raises(Exception, match=f"could not reach the Hub at http://127.0.0.1:{port}"):
            client.predict(run_id, "me/tab-resume", TOKEN, True, api_name="/train_push")
        with pytest.raises(Exception, match="no Hugging Face token"):
            client.predict(run_id, "me/tab-resume", "", False, api_name="/train_push")
        with pytest.raises(Exception, match="is not a Hub repo id"):
            client.predict(run_id, "me/tab resume", TOKEN, False, api_name="/train_push")
    print(f"Train tab: cancelled, resumed from the checkpoint at step {checkpoint}, finished at 12/12")


def test_the_browser_secret_is_made_once_kept_private_and_overridable(settings, tmp_path):
    """The key that encrypts a browser's list of runs survives a restart (else the list is lost with it)."""
    from t2i.ui.train_tab import browser_secret

    fresh = dataclasses.replace(settings, data_dir=tmp_path / "data", browser_secret="")
    first = browser_secret(fresh)
    assert len(first) == 32 and browser_secret(fresh) == first  # the second start reads the same secret back
    assert (tmp_path / "data" / "browser-secret").stat().st_mode & 0o777 == 0o600
    assert browser_secret(dataclasses.replace(fresh, data_dir=tmp_path / "other")) != first
    assert browser_secret(dataclasses.replace(fresh, browser_secret="from-the-env")) == "from-the-env"
