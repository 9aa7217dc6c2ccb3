"""The safety gate on every path of the real engine, CLI and studio: flagged, failing and slow checkers,
the operator's policy, the audit log, and no way for a request to switch checking off."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from t2i.generation.engine import Engine
from t2i.plugins import ImageChecker, PluginManager, PromptChecker, Verdict
from t2i.request import GenerationRequest, RequestError
from t2i.safety.gate import PROMPT_REFUSED, PromptRefused, SafetyGate, load_policy, refusal_message
from t2i.studio import GenerateForm, Studio

# Checker plugins for tests, written as real plugin modules so the CLI and the app can load them from a folder.
TEST_CHECKERS = '''
import threading
from t2i.plugins import ImageChecker, PromptChecker, Verdict


class FlagEveryImage(ImageChecker):
    name = "flag_every_image"

    def check_image(self, image):
        return Verdict(True, "test: flags everything", {"test": 1.0})


class RaisingImageChecker(ImageChecker):
    name = "raising_image_checker"

    def check_image(self, image):
        raise RuntimeError("checker crashed")


class SlowImageChecker(ImageChecker):
    """Answers only once released (or after a minute): slower than any gate timeout a test sets."""
    name = "slow_image_checker"

    def __init__(self):
        self.started, self.release, self.finished = threading.Event(), threading.Event(), threading.Event()

    def check_image(self, image):
        self.started.set()
        self.release.wait(60)
        self.finished.set()
        return Verdict(False)


class FlagWordRed(PromptChecker):
    name = "flag_word_red"

    def check_prompt(self, text):
        return Verdict("red" in text, "test: mentions red", {"red": float("red" in text)})


def register(settings):
    return [FlagEveryImage()]
'''


def checkers_module() -> dict:
    """The test checker classes, from the same source the CLI and the app load as a plugin file."""
    namespace: dict = {}
    exec(TEST_CHECKERS, namespace)
    return namespace


CHECKERS = checkers_module()


def make_engine(settings, *plugins, **policy) -> Engine:
    return Engine(dataclasses.replace(settings, **policy), plugins=PluginManager(plugins))


def square_image(colour=(200, 40, 40), size=64) -> Image.Image:
    return Image.new("RGB", (size, size), colour)


def audit_lines(engine: Engine) -> list[dict]:
    path = engine.safety.policy.audit_log
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def quiet_settings(settings, tmp_path):
    """Test settings with their own audit log and data folder, and fail closed as in production."""
    return dataclasses.replace(settings, data_dir=tmp_path, safety_allow_unchecked_images=False)


MODES = {
    "txt2img": {},
    "img2img": {"init_image": square_image()},
    "inpaint": {"init_image": square_image(), "mask": square_image((255, 255, 255))},
}


@pytest.mark.parametrize("mode", list(MODES))
def test_a_flagged_image_never_leaves_the_engine_in_any_mode(quiet_settings, mode):
    engine = make_engine(quiet_settings, CHECKERS["FlagEveryImage"]())
    events = []
    result = engine.generate(GenerationRequest(prompt="a blue circle", seed=1, steps=6, batch_size=2, batch_count=2,
                                               **MODES[mode]), on_progress=events.append)
    assert result.mode == mode and len(result.images) == 4
    assert all(item.image is None and "withheld" in item.notice for item in result.images)
    shown = [p for event in events if event.previews for p in event.previews]
    assert len(shown) >= 4 and not any(shown)  # previews were made for both batches; none was shown


def test_a_checker_that_raises_withholds_the_image_and_the_engine_keeps_serving(quiet_settings):
    engine = make_engine(quiet_settings, CHECKERS["RaisingImageChecker"]())
    for seed in (1, 2):
        item = engine.generate(GenerationRequest(prompt="a blue circle", seed=seed, steps=2)).images[0]
        assert item.image is None and "withheld" in item.notice
    failures = [line for line in audit_lines(engine) if line["checker"] == "raising_image_checker"]
    assert len(failures) == 2 and all(line["flagged"] and "RuntimeError" in line["reason"] for line in failures)


def test_a_checker_that_times_out_counts_as_a_flag(quiet_settings):
    checker = CHECKERS["SlowImageChecker"]()
    engine = make_engine(quiet_settings, checker, safety_timeout_s=0.3)
    try:
        screened = engine.safety.screen_image(square_image(), "upload")
        # the gate answered while the checker, which had started, was still waiting to be released
        assert checker.started.is_set() and not checker.finished.is_set()
    finally:
        checker.release.set()
    assert screened.flagged and screened.image is None
    assert "timed out" in audit_lines(engine)[-1]["reason"]


def test_the_preview_stream_shows_passing_frames_and_hides_flagged_ones(quiet_settings):
    passing = make_engine(quiet_settings, CHECKERS["FlagWordRed"](), safety_allow_unchecked_images=True)
    events = []
    passing.generate(GenerationRequest(prompt="a blue circle", seed=3, steps=8), on_progress=events.append)
    assert sum(p is not None for e in events if e.previews for p in e.previews) == 3  # steps 2, 4, 6

    class FlagFromStep(ImageChecker):
        """Flags every frame after the first three it sees: the stream must switch to None exactly there."""
        name = "flag_from_step"
        seen = 0

        def check_image(self, image):
            self.seen += 1
            return Verdict(self.seen > 2)

    engine = make_engine(quiet_settings, FlagFromStep())
    events = []
    result = engine.generate(GenerationRequest(prompt="a blue circle", seed=3, steps=8), on_progress=events.append)
    previews = [e.previews[0] for e in events if e.previews]
    assert [p is not None for p in previews] == [True, True, False]
    assert result.images[0].image is None


def test_a_refused_prompt_is_refused_without_naming_the_term(quiet_settings):
    engine = make_engine(quiet_settings, CHECKERS["FlagWordRed"](), CHECKERS["FlagEveryImage"]())
    for request in (GenerationRequest(prompt="a red circle"),
                    GenerationRequest(prompt="a circle", negative_prompt="red")):
        with pytest.raises(PromptRefused) as refused:
            engine.generate(request)
        assert str(refused.value) == PROMPT_REFUSED and "red" not in str(refused.value)
    checked = [line["what"] for line in audit_lines(engine)]
    assert checked[-2:] == ["prompt", "negative prompt"]  # the negative is checked on its own first


@pytest.mark.parametrize("action", ["blur", "black"])
def test_blur_and_black_policies_change_a_flagged_image(quiet_settings, action):
    engine = make_engine(quiet_settings, CHECKERS["FlagEveryImage"](), safety_action=action)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    screened = engine.safety.screen_image(image)
    pixels = np.asarray(screened.image, dtype=float)
    assert screened.flagged and screened.image.size == image.size
    if action == "black":
        assert pixels.max() == 0
    else:  # a blur keeps the mean colour and removes the detail
        assert abs(pixels.mean() - np.asarray(image, dtype=float).mean()) < 5 and pixels.std() < 10


def test_with_no_image_checker_no_image_is_served_unless_the_operator_allows_it(quiet_settings):
    refused = make_engine(quiet_settings).generate(GenerationRequest(prompt="a blue circle", seed=1, steps=2))
    assert refused.images[0].image is None and "no safety checker" in refused.images[0].notice
    allowed = make_engine(quiet_settings, safety_allow_unchecked_images=True)
    assert allowed.generate(GenerationRequest(prompt="a blue circle", seed=1, steps=2)).images[0].image is not None


def test_a_checker_named_by_the_policy_but_missing_refuses_everything(quiet_settings):
    engine = make_engine(quiet_settings, CHECKERS["FlagWordRed"](), safety_checkers=("flag_word_red", "ghost"))
    with pytest.raises(PromptRefused):
        engine.generate(GenerationRequest(prompt="a blue circle", steps=2))
    assert engine.safety.screen_image(square_image()).flagged


def test_the_policy_file_overrides_settings_and_unknown_keys_are_errors(quiet_settings, tmp_path):
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({"action": "black", "timeout_s": 2.5, "thresholds": {"nudenet": {
        "BELLY_EXPOSED": 0.6}}, "audit_log": str(tmp_path / "audit.jsonl")}))
    policy = load_policy(dataclasses.replace(quiet_settings, safety_config=str(config)))
    assert (policy.action, policy.timeout_s, policy.audit_log.name) == ("black", 2.5, "audit.jsonl")
    nudenet = PluginManager.discover(dataclasses.replace(quiet_settings, safety_config=str(config))).plugins["nudenet"]
    assert nudenet.thresholds["BELLY_EXPOSED"] == 0.6 and nudenet.thresholds["ANUS_EXPOSED"] == 0.35
    config.write_text(json.dumps({"actoin": "blur"}))
    with pytest.raises(ValueError, match="expected an object with keys"):
        load_policy(dataclasses.replace(quiet_settings, safety_config=str(config)))
    typo = dataclasses.replace(policy, thresholds={"nudenet": {"BELY_EXPOSED": 1}})
    with pytest.raises(ValueError, match="has no score 'BELY_EXPOSED'"):
        typo.thresholds_for("nudenet", {"BELLY_EXPOSED": 1.0})
    with pytest.raises(ValueError, match="T2I_SAFETY_ACTION"):
        SafetyGate(PluginManager(), dataclasses.replace(quiet_settings, safety_action="ignore"))


def test_the_audit_log_records_every_verdict_without_prompt_text_or_image_data(quiet_settings):
    engine = make_engine(quiet_settings, CHECKERS["FlagWordRed"](), CHECKERS["FlagEveryImage"]())
    engine.generate(GenerationRequest(prompt="a blue circle", negative_prompt="green", seed=1, steps=4,
                                      batch_size=2), on_progress=lambda event: None)
    lines = audit_lines(engine)
    assert {line["what"] for line in lines} == {"prompt", "negative prompt", "prompt without negative", "preview",
                                                "image"}
    assert len({line["request_id"] for line in lines}) == 1  # one request, one id
    keys = {"time", "request_id", "what", "checker", "flagged", "reason", "scores", "seconds"}
    # a prompt's verdict also records the categories flagged and what the policy did with each
    assert all(set(line) == (keys | {"categories"} if "prompt" in line["what"] else keys) for line in lines)
    text = engine.safety.policy.audit_log.read_text()
    assert "blue circle" not in text and "green" not in text and len(text) < 300 * len(lines)


def test_no_request_field_can_switch_checking_off(quiet_settings, tmp_path):
    engine = make_engine(quiet_settings, CHECKERS["FlagEveryImage"]())
    with pytest.raises(RequestError, match="unknown plugin 'flag_every_image'"):
        engine.generate(GenerationRequest(prompt="a blue circle", plugin_units={"flag_every_image": [{}]}))
    safety_words = ("safe", "nsfw", "check", "filter", "moderat")
    for cls in (GenerationRequest, GenerateForm):
        assert not [f.name for f in dataclasses.fields(cls) if any(w in f.name for w in safety_words)]
    studio = Studio(engine.settings, engine)
    upload = tmp_path / "init.png"
    square_image().save(upload)
    with pytest.raises(RequestError, match="init image was refused by the safety checker"):
        studio.request_from_form(GenerateForm(prompt="a blue circle", init_image=str(upload)))
    with pytest.raises(RequestError, match="withheld by the safety checker"):
        list(studio.generate(GenerateForm(prompt="a blue circle", steps=2, seed=1), "session"))


def _cli(tmp_path, plugin_dir, *args):
    env = {**os.environ, "T2I_PLUGIN_DIRS": str(plugin_dir), "T2I_ENTRY_POINT_PLUGINS": "0", "T2I_DEVICE": "cpu",
           "T2I_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "t2i", "generate", *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow  # the CLI in a subprocess
def test_the_cli_prints_the_reason_exits_non_zero_and_writes_no_file(tmp_path):
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "test_checkers.py").write_text(TEST_CHECKERS)
    out = tmp_path / "out.png"
    run = _cli(tmp_path, plugin_dir, "a blue circle", "-o", str(out), "--steps", "2", "--batch-size", "2")
    assert run.returncode == 1 and not list(tmp_path.glob("out*.png"))
    assert run.stderr.strip().splitlines()[-1] == "error: image withheld by the safety checker; no file written"
    run = _cli(tmp_path, plugin_dir, "a naked woman", "-o", str(out), "--steps", "2")
    assert run.returncode == 1 and not out.exists()
    assert run.stderr.strip().splitlines()[-1] == f"error: {refusal_message('sexual')}"
