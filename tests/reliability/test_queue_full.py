"""Queue full: an app with T2I_QUEUE_SIZE=2 gets a burst of 10; the extras are refused at once, the rest finish.

Gradio answers a full queue with HTTP 503 and "Queue is full" (Retry-later semantics); its own clients (Python
and JS) rely on that status to show the message, so the test holds the app to exactly that and never a 500.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from gradio_client import Client
from gradio_client.utils import QueueError

from app_calls import empty_required, generate, read_output

pytestmark = pytest.mark.slow  # the real app (reliability suite)

QUEUE_SIZE = 2
BURST = 10
JOB = dict(prompt="a red square on a green background", seed=5, steps=60)  # a few seconds each


@pytest.fixture(scope="module")
def small_queue_url(launch_app, tmp_path_factory):
    with launch_app(tmp_path_factory.mktemp("queue-data"), T2I_QUEUE_SIZE=str(QUEUE_SIZE)) as url:
        yield url


def generate_fn_index(url: str) -> int:
    config = httpx.get(url + "config", timeout=30).json()
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == "generate")


def wait_until_the_queue_is_full(url: str, timeout: float = 120) -> None:
    """Poll Gradio's queue status until QUEUE_SIZE jobs wait in it."""
    deadline = time.monotonic() + timeout
    while httpx.get(url + "gradio_api/queue/status", timeout=30).json()["queue_size"] < QUEUE_SIZE:
        assert time.monotonic() < deadline, "the burst never filled the queue"
        time.sleep(0.05)


def test_a_burst_beyond_the_queue_is_refused_at_once_and_accepted_jobs_finish(small_queue_url, report):
    clients = [Client(small_queue_url, verbose=False) for _ in range(BURST)]
    alone = generate(clients[0], **JOB)
    fields = {**empty_required(clients[0]), **JOB}

    finished = []  # the accepted jobs that came back, in order; a refusal notes how many had when it came
    lock = threading.Lock()

    def submit(client: Client):
        started = time.perf_counter()
        try:
            output = read_output(client.predict(**fields, api_name="/generate"))
        except QueueError as exc:
            with lock:
                return exc, time.perf_counter() - started, len(finished)
        with lock:
            finished.append(output)
        return output, time.perf_counter() - started, None

    with ThreadPoolExecutor(BURST) as pool:
        burst = pool.submit(lambda: list(pool.map(submit, clients)))
        wait_until_the_queue_is_full(small_queue_url)  # then one more over plain HTTP must get the same answer
        started = time.perf_counter()
        answer = httpx.post(small_queue_url + "gradio_api/queue/join", timeout=30, json={
            "data": [], "fn_index": generate_fn_index(small_queue_url), "session_hash": "burst-probe"})
        probe_s = time.perf_counter() - started
        with lock:
            finished_at_probe = len(finished)
        results = burst.result(timeout=600)

    refused = [(seconds, done) for out, seconds, done in results if isinstance(out, QueueError)]
    accepted = [out for out, _, _ in results if not isinstance(out, Exception)]
    print(f"\nqueue {QUEUE_SIZE}, burst {BURST}: {len(accepted)} accepted, {len(refused)} refused "
          f"(slowest refusal {max((s for s, _ in refused), default=0):.2f} s); plain HTTP join: {answer.status_code} "
          f"in {probe_s:.2f} s; accepted jobs finished at each refusal {[done for _, done in refused]}, at the probe "
          f"{finished_at_probe}")
    report["faults"].append(("queue full", bool(refused) and all(o.same_as(alone) for o in accepted)))
    assert len(accepted) + len(refused) == BURST  # no other kind of failure
    assert QUEUE_SIZE <= len(accepted) < BURST and refused
    # at once, not after waiting for the accepted jobs: each refusal came while some accepted job was unfinished
    # (once all had finished, the queue would have been empty and nothing refused)
    assert all(done < len(accepted) for _, done in refused), (refused, len(accepted))
    assert all(out.same_as(alone) for out in accepted)
    assert answer.status_code == 503 and "Queue is full" in answer.json()["detail"]
    assert finished_at_probe < len(accepted)  # the probe too was answered while the queue was still busy
