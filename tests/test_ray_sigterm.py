"""SIGTERM stops the app on the Ray backend cleanly: status 0 (it was 134, abseil's abort), and no process it
started (raylet, GCS, Serve controller, replica) outlives it (tests/ray_scripts/sigterm_app.py, run in new
network and PID namespaces)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the app, a Ray cluster and a replica start (about 40 s on 2 quiet cores)
pytest.importorskip("ray", reason="Ray is the optional `ray` extra (requirements-ray.txt)")

from t2i.ray.loopback import loopback_environment, unavailable_reason  # noqa: E402

SCRIPT = Path(__file__).resolve().parent / "ray_scripts" / "sigterm_app.py"


def test_sigterm_stops_the_ray_app_with_status_0_and_nothing_left_running(tmp_path):
    import subprocess

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    report = tmp_path / "report.json"
    # its own PID namespace: the script is PID 1 there, sees every process the app starts, and they all end with it
    done = subprocess.run(["unshare", "-n", "-p", "-f", "--mount-proc", sys.executable, str(SCRIPT), str(report),
                           str(tmp_path / "data")],
                          env=loopback_environment(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
                                                   GRADIO_ANALYTICS_ENABLED="False"),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(report.read_text())
    assert seen["processes_while_serving"] >= 3, seen  # the app and Ray's own processes were running
    assert seen["status"] == 0, seen["log_tail"]
    assert "Aborted" not in seen["log_tail"] and "SIGTERM received" not in seen["log_tail"], seen["log_tail"]
    assert seen["left"] == [], seen
