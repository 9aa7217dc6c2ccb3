"""The reliability suite: one real app on 127.0.0.1 with two LoRAs, a failing plugin and a tmpfs for outputs.

Tests add their numbers to `REPORT`; the summary table is printed at the end of the run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from gradio_client import Client

from app_calls import MAX_UPLOAD_MB, SAFETY_TIMEOUT_S, write_control_image, write_test_loras

FAULT_PLUGINS_DIR = Path(__file__).resolve().parent / "fault_plugins"
REPORT: dict[str, list] = {"load": [], "faults": [], "hostile": [], "lost": []}


@pytest.fixture(scope="session")
def reliability_data(tmp_path_factory) -> Path:
    """A data folder holding LoRAs `tint_a` and `tint_b`; its `sessions/` (the outputs) is a 32 MB tmpfs if we may mount."""
    data = tmp_path_factory.mktemp("reliability-data")
    write_test_loras(data / "loras")
    sessions = data / "sessions"
    sessions.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(sessions)],
                             capture_output=True).returncode == 0
    yield data
    if mounted:
        subprocess.run(["umount", "-l", str(sessions)], check=False)


@pytest.fixture(scope="session")
def gradio_uploads(reliability_data) -> Path:
    """The app's Gradio upload/cache folder: app.py points GRADIO_TEMP_DIR at the data folder's uploads/."""
    return reliability_data / "uploads"


@pytest.fixture(scope="session")
def reliability_url(reliability_data, launch_app):
    """The real app with the fault plugins, a 1 MB upload cap, the rate limit off, a short safety timeout
    and a training lock of its own (a training elsewhere on the machine must not hold up its tests)."""
    with launch_app(reliability_data, T2I_PLUGIN_DIRS=str(FAULT_PLUGINS_DIR),
                    T2I_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB), T2I_SAFETY_TIMEOUT=str(SAFETY_TIMEOUT_S),
                    T2I_TRAIN_LOCK=str(reliability_data / "train.lock"), T2I_TRAIN_THREADS="1") as url:
        yield url


@pytest.fixture(scope="session")
def report() -> dict[str, list]:
    """Where tests put the numbers of the summary table."""
    return REPORT


@pytest.fixture(scope="session")
def control_image(tmp_path_factory) -> Path:
    """A held-out shapes-world picture for the ControlNet unit."""
    return write_control_image(tmp_path_factory.mktemp("control") / "control.png")


def pytest_terminal_summary(terminalreporter):
    if not any(REPORT.values()):
        return
    write = terminalreporter.write_line
    write("")
    write("reliability summary")
    write(f"{'check':<16} result")
    for load in REPORT["load"]:
        write(f"{'load held':<16} clients {load['clients']}, requests {load['requests']}, failures "
              f"{load['failures']}, p50 {load['p50']:.2f} s, p95 {load['p95']:.2f} s, {load['throughput']:.2f} req/s")
    faults = REPORT["faults"]
    if faults:
        write(f"{'faults survived':<16} {sum(ok for _, ok in faults)} of {len(faults)} "
              f"({', '.join(name for name, _ in faults)})")
    hostile = REPORT["hostile"]
    if hostile:
        write(f"{'hostile inputs':<16} {len(hostile)} tried, {sum(hostile)} refused")
    if REPORT["lost"]:
        write(f"{'data lost':<16} {sum(REPORT['lost'])} files")


@pytest.fixture(scope="module")
def client(reliability_url):
    """A gradio_client connected to the reliability suite's app."""
    return Client(reliability_url, verbose=False)
