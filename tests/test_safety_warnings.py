"""A `warn` category (T2I_SAFETY_CATEGORIES) lets the prompt run and tells the user: each image's notice names the
category, never the matched word, in the engine's result, the page's info box, both APIs' `t2i_notices` and the CLI's stderr;
the audit log records the category."""

from __future__ import annotations

import dataclasses
import json
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api_helpers import make_studio
from t2i.api.server import api_app
from t2i.generation.engine import Engine
from t2i.request import GenerationRequest
from t2i.studio import GenerateForm

GORE = "a beheaded body on a red background"
WARNING = "content warning: the prompt touches graphic violence and gore"


@pytest.fixture(scope="module")
def warning_engine(settings, engine, tmp_path_factory):
    """An engine whose operator lets graphic violence run with a warning (the session's loaded checkers)."""
    return Engine(dataclasses.replace(settings, safety_categories="violence_gore=warn",
                                      data_dir=tmp_path_factory.mktemp("warn-data")), plugins=engine.plugins)


def test_the_gate_hands_the_warning_to_final_images_only(warning_engine):
    gate = warning_engine.safety
    assert gate.check_prompts(GORE, request_id="r1") == ["violence_gore"]
    image = Image.new("RGB", (64, 64), (200, 30, 30))
    assert WARNING in gate.screen_image(image, "image", request_id="r1").notice
    assert gate.screen_image(image, "preview", request_id="r1").notice == ""
    assert gate.screen_image(image, "image", request_id="other").notice == ""
    assert gate.check_prompts("a red circle", request_id="r2") == [] and gate.content_warning("r2") == ""


def test_a_warned_prompt_runs_and_every_image_says_why_never_the_word(warning_engine):
    result = warning_engine.generate(GenerationRequest(prompt=GORE, seed=1, steps=2, batch_size=2))
    assert [item.image is not None for item in result.images] == [True, True]
    for item in result.images:
        assert WARNING in item.notice and "behead" not in item.notice
    plain = warning_engine.generate(GenerationRequest(prompt="a red circle", seed=1, steps=2))
    assert plain.images[0].notice == ""
    logged = [json.loads(line) for line in warning_engine.safety.policy.audit_log.read_text().splitlines()]
    assert {"violence_gore": "warn"} in [line.get("categories") for line in logged]


def test_the_page_and_the_sdapi_answer_carry_the_warning(settings, warning_engine, tmp_path):
    studio = make_studio(settings, warning_engine, tmp_path)
    shown = next(update for update in studio.generate(GenerateForm(prompt=GORE, seed=2, steps=2), "s") if update.files)
    notice = shown.info.splitlines()[-1]  # the page's info box: the recipe (with the prompt), then the notices
    assert notice.startswith(WARNING) and "behead" not in notice
    client = TestClient(api_app(studio))
    answer = client.post("/sdapi/v1/txt2img", json={"prompt": GORE, "seed": 2, "steps": 2})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["images"]) == 1
    notices = json.loads(answer.json()["info"])["t2i_notices"]
    assert len(notices) == 1 and WARNING in notices[0] and "behead" not in notices[0]
    answer = client.post("/v1/images/generations", json={"prompt": GORE, "size": "64x64"})
    assert answer.status_code == 200, answer.text
    notices = answer.json()["t2i_notices"]  # the OpenAI images answer carries them beside `data`
    assert len(answer.json()["data"]) == 1 and WARNING in notices[0] and "behead" not in notices[0]
    plain = client.post("/v1/images/generations", json={"prompt": "a red circle", "size": "64x64"})
    assert plain.status_code == 200 and "t2i_notices" not in plain.json()


def test_the_cli_prints_the_warning_on_stderr(tmp_path, monkeypatch, capsys):
    from t2i.cli import main

    for name, value in {"T2I_DEVICE": "cpu", "T2I_DATA_DIR": str(tmp_path / "data"),
                        "T2I_SAFETY_CATEGORIES": "violence_gore=warn"}.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out.png"
    assert main(["generate", GORE, "-o", str(out), "--steps", "2"]) == 0
    printed = capsys.readouterr()
    assert out.exists() and WARNING not in printed.out and "behead" not in printed.err
    assert f"out.png: {WARNING}" in printed.err
