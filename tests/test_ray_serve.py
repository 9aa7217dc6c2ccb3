"""Serving on Ray Serve, end to end: 2 replicas behind the app (tests/ray_scripts/serve_checks.py, run once in a
loopback-only network namespace; each test reads one part of what it saw)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a Ray cluster, the app and 2 replicas (about 2-3 minutes on 2 cores)
pytest.importorskip("ray", reason="Ray is the optional `ray` extra (requirements-ray.txt)")

from t2i.ray.loopback import loopback_command, loopback_environment, unavailable_reason  # noqa: E402

SCRIPT = Path(__file__).resolve().parent / "ray_scripts" / "serve_checks.py"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("ray-serve")
    out = folder / "report.json"
    done = subprocess.run(loopback_command([sys.executable, str(SCRIPT), str(out), str(folder / "data")]),
                          env=loopback_environment(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
                                                   GRADIO_ANALYTICS_ENABLED="False"),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(out.read_text())


def test_mixed_concurrent_requests_give_the_local_engines_bytes(report):
    mixed = report["mixed"]
    assert len(mixed) >= 12
    for kind in ("base", "<lora:ink", "<lora:dots", "<lora:ink:0.7> <lora:dots", "controlnet", "seed -1"):
        assert any(kind in item["label"] for item in mixed), kind
    assert [item["label"] for item in mixed if not item["same"]] == []


def test_both_replicas_served_requests(report):
    assert len(report["served"]) == 2 and all(count > 0 for count in report["served"].values())


def test_a_blocked_prompt_is_refused_as_the_local_engine_refuses_it(report):
    blocked = report["blocked"]
    assert blocked["local"] is not None and blocked["local"][0] == "PromptRefused"
    assert blocked["ray"] == blocked["local"]  # the same class and message
    assert blocked["gradio"] is not None and blocked["local"][1] in blocked["gradio"]


def test_stop_cancels_the_replicas_run(report):
    stop = report["stop"]
    assert stop["cancelled"] and stop["steps_seen"] < 150
    state = stop["replica_state"]  # counted by the replica: its engine run ended as stopped, not finished
    assert state["stopped"] == 1 and state["running"] == 0


def test_a_request_whose_replica_is_killed_is_retried_on_another(report):
    kill = report["kill"]
    assert kill["retries"] == 1
    assert kill["finished_by"] and kill["finished_by"] != kill["killed"]
    assert kill["same"]
