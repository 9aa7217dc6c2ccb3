"""Isolation under load: base, LoRA A, LoRA B, A+B, ControlNet and batch requests from 8 concurrent clients.

Every output must equal, pixel for pixel and recipe for recipe, the same request run alone: no LoRA or
ControlNet state leaks between users of the shared pipeline, and no scheduler is shared between runs.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from gradio_client import Client

from app_calls import generate, request_mix

pytestmark = pytest.mark.slow  # the real app (reliability suite)

CLIENTS = 8
REPEATS = 7  # 6 kinds x 7 = 42 requests


def test_concurrent_mix_equals_each_request_run_alone(reliability_url, control_image, report):
    mix = request_mix(control_image)
    solo_client = Client(reliability_url, verbose=False)
    alone = {name: generate(solo_client, **fields) for name, fields in mix.items()}
    # the mix must be able to show a leak: every kind differs from the others
    assert len(alone["batch"].pixels) == 2
    for a in ("base", "lora_a", "lora_b", "lora_a_b"):
        for b in ("base", "lora_a", "lora_b", "lora_a_b"):
            if a < b:
                assert np.abs(alone[a].pixels[0].astype(float) - alone[b].pixels[0]).mean() > 1, (a, b)

    clients = [Client(reliability_url, verbose=False) for _ in range(CLIENTS)]
    jobs = [name for _ in range(REPEATS) for name in mix]

    def run(index: int):
        name = jobs[index]
        started = time.perf_counter()
        try:
            output = generate(clients[index % CLIENTS], **mix[name])
        except Exception as exc:  # counted as a failure, with its message
            return name, time.perf_counter() - started, exc
        return name, time.perf_counter() - started, output

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(run, range(len(jobs))))
    wall = time.perf_counter() - started

    failures = [(name, repr(out)) for name, _, out in results if isinstance(out, Exception)]
    different = [name for name, _, out in results if not isinstance(out, Exception) and not out.same_as(alone[name])]
    latencies = np.array([seconds for _, seconds, _ in results])
    numbers = dict(clients=CLIENTS, requests=len(jobs), failures=len(failures) + len(different),
                   p50=float(np.percentile(latencies, 50)), p95=float(np.percentile(latencies, 95)),
                   throughput=len(jobs) / wall)
    report["load"].append(numbers)
    print(f"\nload: {numbers}")
    assert not failures, failures[:3]
    assert not different, different
