"""Faults: a client that vanishes mid-job, a stopped job, a full output disk, a plugin raising mid-sampling.

After each, the next request must come back correct (equal to the reference run), and no output file
written before may change or be left half-written.
"""

from __future__ import annotations

import concurrent.futures
import errno
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.utils import Status
from PIL import Image

from app_calls import empty_required, generate, output_files, outputs_on_tmpfs

pytestmark = pytest.mark.slow  # the real app (reliability suite)


NORMAL = dict(prompt="a small green square in the top left on a black background", seed=8, steps=6)
# minutes of work: if it were not stopped, the next request would wait far longer than NEXT_WITHIN_S
LONG = dict(prompt="a yellow ring on a purple background", seed=1, steps=150, batch_count=16)
NEXT_WITHIN_S = 30


@pytest.fixture(scope="module")
def reference(client):
    """The normal request's output, and the output files that exist after it (these must never change)."""
    return generate(client, **NORMAL)


@pytest.fixture(scope="module")
def earlier(reference, reliability_data):
    return output_files(reliability_data)


def next_request_is_correct(client, reference, report, fault: str) -> None:
    started = time.perf_counter()
    output = generate(client, **NORMAL)
    took = time.perf_counter() - started
    ok = output.same_as(reference) and took < NEXT_WITHIN_S
    report["faults"].append((fault, ok))
    assert output.same_as(reference)
    assert took < NEXT_WITHIN_S, f"the next request waited {took:.0f} s: the abandoned job kept the model"


def wait_until_sampling(job, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = job.status()
        if status.code == Status.PROGRESS or status.progress_data:
            return
        time.sleep(0.2)
    raise AssertionError(f"the long job never started sampling: {job.status()}")


DISCONNECTING_CLIENT = """
import sys, time
from gradio_client import Client
from gradio_client.utils import Status
client = Client(sys.argv[1], verbose=False)
fields = eval(sys.argv[2])
job = client.submit(**fields, api_name="/generate")
while not (job.status().progress_data or job.status().code == Status.PROGRESS):
    time.sleep(0.2)
print("sampling", flush=True)
time.sleep(3600)
"""


def test_client_disconnecting_mid_job(client, reference, earlier, reliability_url, report):
    fields = {**empty_required(client), **LONG}
    process = subprocess.Popen([sys.executable, "-c", DISCONNECTING_CLIENT, reliability_url, repr(fields)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "sampling"
    finally:
        process.send_signal(signal.SIGKILL)  # the connection drops without a goodbye
        process.wait()
    next_request_is_correct(client, reference, report, "client disconnect")


def test_stopped_job(client, reference, earlier, report):
    job = client.submit(**{**empty_required(client), **LONG}, api_name="/generate")
    wait_until_sampling(job)
    client.predict(api_name="/stop")
    concurrent.futures.wait([job.future], timeout=NEXT_WITHIN_S)  # the job's own future: blocks until it ends
    assert job.done()
    next_request_is_correct(client, reference, report, "/stop")


def test_plugin_raising_mid_sampling(client, reference, earlier, report):
    with pytest.raises(Exception, match="boom at step 3"):
        generate(client, **NORMAL, explode_1_enabled=True, explode_1_at_step=3)
    next_request_is_correct(client, reference, report, "plugin raises")


def fill(folder: Path) -> Path:
    """Write zeros into `folder` until the disk is full; the filler file's path."""
    filler = folder / "filler.bin"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * (1 << 20))
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_full_output_disk(client, reference, earlier, reliability_data, report):
    if not outputs_on_tmpfs(reliability_data):
        pytest.skip("no tmpfs could be mounted for the outputs (needs root)")
    filler = fill(reliability_data / "sessions")
    try:
        before = set(output_files(reliability_data))
        with pytest.raises(Exception, match="no space left on the server to save the images"):
            generate(client, **NORMAL)
        assert set(output_files(reliability_data)) == before  # no torn or partial file left behind
    finally:
        filler.unlink()
    next_request_is_correct(client, reference, report, "disk full")


def test_nothing_written_earlier_was_lost_or_corrupted(earlier, reliability_data, report):
    now = output_files(reliability_data)
    lost = [path for path, digest in earlier.items() if now.get(path) != digest]
    torn = [path for path in now if path.suffix != ".png"]  # write_atomically's temporary files
    for path in now:
        with Image.open(path) as image:
            image.load()  # a truncated PNG fails here
    report["lost"].append(len(lost) + len(torn))
    assert not lost and not torn, (lost, torn)
