"""The image safety checker failing on the app path: it raises, or hangs past the policy's timeout.

The gate fails closed: the client gets a clear "withheld" error, no unchecked image reaches the outputs
folder, the audit log says why, and the next request from another client comes back correct.
"""

from __future__ import annotations

import json

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from app_calls import SAFETY_TIMEOUT_S, generate, output_files
from t2i.eval.analyzer import analyze

pytestmark = pytest.mark.slow  # the real app (reliability suite)

NORMAL = dict(prompt="a large red circle in the middle on a white background", seed=4, steps=12)
# steps=2 screens the final image only (no preview), so a hang costs one timeout. NudeNet itself passes this
# 2-step image (no detection at all); it withholds some other 2-step noise images (this prompt at seeds 9 and 11),
# and the gate stops at the first checker that flags, so those would never reach the faulty checker.
CHECKED = dict(prompt="a large red circle in the middle on a white background", seed=2, steps=2)


@pytest.fixture(scope="module")
def reference(client):
    """The normal request's output while the checker passes everything; it must be a red circle on white."""
    output = generate(client, **NORMAL)
    found = analyze(Image.fromarray(output.pixels[0]))
    assert found.background == "white" and (found.objects[0].colour, found.objects[0].shape) == ("red", "circle")
    return output


@pytest.fixture
def checker_mode(reliability_data):
    """Sets the faulty checker's mode in the running app; it passes again after the test."""
    mode_file = reliability_data / "faulty_checker_mode"
    yield mode_file.write_text
    mode_file.unlink(missing_ok=True)


def audit_entries(data_dir, since: int) -> list[dict]:
    """The faulty checker's audit log entries after the first `since` lines."""
    lines = (data_dir / "safety_audit.jsonl").read_text(encoding="utf-8").splitlines()[since:]
    return [entry for entry in map(json.loads, lines) if entry["checker"] == "faulty_checker"]


@pytest.mark.parametrize("mode, reason", [("raise", "checker faulty_checker failed: RuntimeError"),
                                          ("hang", f"checker faulty_checker timed out after {SAFETY_TIMEOUT_S} s")])
def test_a_failing_image_checker_withholds_the_image_and_the_app_keeps_serving(
        mode, reason, client, reference, reliability_url, reliability_data, checker_mode, report):
    before = output_files(reliability_data)
    audit_lines = len((reliability_data / "safety_audit.jsonl").read_text(encoding="utf-8").splitlines())
    checker_mode(mode)
    with pytest.raises(AppError, match="image withheld by the safety checker"):
        generate(client, **CHECKED)
    checker_mode("pass")  # (a hung checker hangs until this: the answer above did not wait for it)

    assert output_files(reliability_data) == before  # no unchecked (or any) image was written
    entries = audit_entries(reliability_data, audit_lines)
    # hang: the gate's own timeout withheld the image (a gate that waited for the checker would have got its pass)
    assert [(e["what"], e["flagged"], e["reason"]) for e in entries] == [("image", True, reason)]

    other = Client(reliability_url, verbose=False)  # another user, right after
    output = generate(other, **NORMAL)
    ok = output.same_as(reference)
    report["faults"].append((f"safety checker {'raises' if mode == 'raise' else 'hangs'}", ok))
    assert ok


def test_a_raising_checker_refuses_uploads_and_shows_no_preview(client, reference, reliability_data, checker_mode,
                                                                  tmp_path):
    init = tmp_path / "init.png"
    Image.fromarray(reference.pixels[0]).save(init)
    checker_mode("raise")
    with pytest.raises(AppError, match="init image was refused by the safety checker"):
        generate(client, **NORMAL, init_image=handle_file(str(init)))
    # 12 steps send previews; each one the checker cannot judge is held back, never sent unchecked
    job = client.submit(**NORMAL, api_name="/generate")
    with pytest.raises(AppError, match="image withheld"):
        job.result()
    assert previews(job) == 0
    checker_mode("pass")
    job = client.submit(**NORMAL, api_name="/generate")
    job.result()
    assert previews(job) > 0  # the same request shows previews when the checker works


def previews(job) -> int:
    """How many preview images a finished /generate job sent."""
    return sum(1 for update in job.outputs() if update and update[0] is not None)
