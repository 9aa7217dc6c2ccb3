"""Faults: a client that vanishes mid-job, a stopped job, a full output disk, a plugin raising mid-sampling.

After each, the faulted run must have ended (the app's "generation ... ; N running, M waiting" line, which the
studio logs once a run gives back its place and before its caller sees the outcome): a stopped or abandoned run
cancelled short of its 16 x 150 steps, with nothing left running or waiting. Then the next request must come back
correct (equal to the reference run), and no output file written before may change or be left half-written.
"""

from __future__ import annotations

import concurrent.futures
import errno
import re
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
LONG = dict(prompt="a yellow ring on a purple background", seed=1, steps=150, batch_count=16)  # minutes of work
# t2i/studio.py's line as each run ends; a LONG run's is told apart by its 16 batches
RUN_ENDED = rb"generation (finished|cancelled|failed \(\w+\)) (?:at step (\d+)/(\d+) of batch (\d+)/(\d+)|before its " \
            rb"first step); (\d+) running, (\d+) waiting"
LONG_ENDED = rb"generation [\w ()]+ at step \d+/150 of batch \d+/16;"  # faulted while sampling: a step is named
ENDED_WITHIN_S = 300  # only a deadline for a run that never ends (the line then never comes): no speed is asserted


@pytest.fixture(scope="module")
def reference(client):
    """The normal request's output, and the output files that exist after it (these must never change)."""
    return generate(client, **NORMAL)


@pytest.fixture(scope="module")
def earlier(reference, reliability_data):
    return output_files(reliability_data)


def run_ended(app, pattern: bytes, before: int) -> tuple:
    """Wait for the app's next (the `before`+1-th) line matching `pattern`, a run's end; its RUN_ENDED fields:
    (outcome, step, steps, batch, batches, running, waiting), numbers as ints (None before a first step)."""
    app.wait_for_lines(pattern, before + 1, timeout=ENDED_WITHIN_S)
    line = [line for line in app.lines if re.search(pattern, line)][before]
    outcome, *numbers = re.search(RUN_ENDED, line).groups()
    return (outcome.decode(), *(int(n) if n is not None else None for n in numbers))


def cancelled_short(ended: tuple) -> bool:
    """The run was cancelled before its last step of its last batch: it gave up the model early."""
    outcome, step, steps, batch, batches, _, _ = ended
    return outcome == "cancelled" and (step is None or (batch, step) < (batches, steps))


def next_request_is_correct(client, reference, report, fault: str, ended: tuple, ended_ok: bool) -> None:
    """With the faulted run `ended` as expected (`ended_ok`) and nothing running or waiting, the next request's images
    equal the reference's."""
    idle = ended[-2:] == (0, 0)  # no run held the model or waited for it when the faulted one ended
    print(f"\n{fault}: the run ended {ended}")
    output = generate(client, **NORMAL)
    report["faults"].append((fault, ended_ok and idle and output.same_as(reference)))
    assert ended_ok, f"the faulted run ended as {ended}"
    assert idle, f"runs still running, waiting after the faulted one ended: {ended[-2:]}"
    assert output.same_as(reference)


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
    app, before = reliability_url.app, reliability_url.app.count_lines(LONG_ENDED)
    fields = {**empty_required(client), **LONG}
    process = subprocess.Popen([sys.executable, "-c", DISCONNECTING_CLIENT, reliability_url, repr(fields)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "sampling"
    finally:
        process.send_signal(signal.SIGKILL)  # the connection drops without a goodbye
        process.wait()
    ended = run_ended(app, LONG_ENDED, before)  # the app noticed the dropped connection and stopped the run
    next_request_is_correct(client, reference, report, "client disconnect", ended, cancelled_short(ended))


def test_stopped_job(client, reference, earlier, reliability_url, report):
    app, before = reliability_url.app, reliability_url.app.count_lines(LONG_ENDED)
    job = client.submit(**{**empty_required(client), **LONG}, api_name="/generate")
    wait_until_sampling(job)
    client.predict(api_name="/stop")
    ended = run_ended(app, LONG_ENDED, before)
    # the client's job ends as well (the deadline only guards against a hang; no speed is asserted)
    concurrent.futures.wait([job.future], timeout=ENDED_WITHIN_S)
    assert job.done()
    next_request_is_correct(client, reference, report, "/stop", ended, cancelled_short(ended))


def test_plugin_raising_mid_sampling(client, reference, earlier, reliability_url, report):
    failed = rb"generation failed \(\w+\) at step \d+/6 of batch 1/1;"
    app, before = reliability_url.app, reliability_url.app.count_lines(failed)
    with pytest.raises(Exception, match="boom at step 3"):
        generate(client, **NORMAL, explode_1_enabled=True, explode_1_at_step=3)
    ended = run_ended(app, failed, before)  # logged before the error reached the client
    next_request_is_correct(client, reference, report, "plugin raises", ended, ended[1] < ended[2])


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


def test_full_output_disk(client, reference, earlier, reliability_data, reliability_url, report):
    if not outputs_on_tmpfs(reliability_data):
        pytest.skip("no tmpfs could be mounted for the outputs (needs root)")
    app, runs_ended = reliability_url.app, reliability_url.app.count_lines(RUN_ENDED)
    filler = fill(reliability_data / "sessions")
    try:
        before = set(output_files(reliability_data))
        with pytest.raises(Exception, match="no space left on the server to save the images"):
            generate(client, **NORMAL)
        assert set(output_files(reliability_data)) == before  # no torn or partial file left behind
    finally:
        filler.unlink()
    ended = run_ended(app, RUN_ENDED, runs_ended)  # the run itself finished: saving its images failed after it
    next_request_is_correct(client, reference, report, "disk full", ended, ended[:3] == ("finished", 6, 6))


def test_nothing_written_earlier_was_lost_or_corrupted(earlier, reliability_data, report):
    now = output_files(reliability_data)
    lost = [path for path, digest in earlier.items() if now.get(path) != digest]
    torn = [path for path in now if path.suffix != ".png"]  # write_atomically's temporary files
    for path in now:
        with Image.open(path) as image:
            image.load()  # a truncated PNG fails here
    report["lost"].append(len(lost) + len(torn))
    assert not lost and not torn, (lost, torn)
