"""`python -m bench.load [--clients 16] [--requests 300]`: the real app on 127.0.0.1 under concurrent clients.

It mixes base, LoRA A, LoRA B, A+B, ControlNet and batch requests (tests/reliability/app_calls.py), checks every
output against the same request run alone, and prints failures, p50/p95 latency and throughput.

`python -m bench.load --soak 1800 [--rate 1]`: a steady rate for that many seconds instead; samples the app's
RSS every 10 s and prints its growth after warm-up (the first tenth of the run); writes bench/results/soak.png.
Results go to bench/results/load.json or soak.json. Neither mode runs in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(TESTS_DIR), str(TESTS_DIR / "reliability")]  # the suite's app launcher and request mix

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from gradio_client import Client  # noqa: E402

from app_calls import generate, request_mix, write_control_image, write_test_loras  # noqa: E402
from conftest import running_app  # noqa: E402  (tests/conftest.py)

from .common import RESULTS_DIR, embedded_model_stamp, machine  # noqa: E402


def load(url: str, control: Path, clients: int, requests: int) -> dict:
    """Concurrent mixed requests, each compared with its solo run; failures, latency and throughput."""
    mix = request_mix(control)
    alone = {name: generate(Client(url, verbose=False), **fields) for name, fields in mix.items()}
    pool_clients = [Client(url, verbose=False) for _ in range(clients)]
    names = [list(mix)[i % len(mix)] for i in range(requests)]

    def run(index: int):
        started = time.perf_counter()
        try:
            same = generate(pool_clients[index % clients], **mix[names[index]]).same_as(alone[names[index]])
        except Exception as exc:  # a failure, counted and shown
            print(f"request {index} ({names[index]}) failed: {exc!r}")
            same = False
        return same, time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(run, range(requests)))
    wall = time.perf_counter() - started
    latencies = np.array([seconds for _, seconds in results])
    return {"clients": clients, "requests": requests, "failures": sum(not same for same, _ in results),
            "p50_s": float(np.percentile(latencies, 50)), "p95_s": float(np.percentile(latencies, 95)),
            "throughput_per_s": requests / wall, "wall_s": wall}


def soak(url: str, control: Path, seconds: float, rate: float) -> dict:
    """Requests at `rate` per second for `seconds`, RSS of the app sampled every 10 s."""
    app = next(p for p in psutil.Process().children(recursive=True) if "app.py" in " ".join(p.cmdline()))
    mix = list(request_mix(control).values())
    samples, failures, sent = [], [], [0]
    stop = threading.Event()

    def sample():
        while not stop.wait(10):
            samples.append((time.perf_counter() - started, app.memory_info().rss / 2**20))

    def one(index: int):
        try:
            generate(clients[index % len(clients)], **mix[index % len(mix)])
        except Exception as exc:
            failures.append(repr(exc))

    clients = [Client(url, verbose=False) for _ in range(4)]
    started = time.perf_counter()
    threading.Thread(target=sample, daemon=True).start()
    with ThreadPoolExecutor(8) as pool:
        while time.perf_counter() - started < seconds:
            pool.submit(one, sent[0])
            sent[0] += 1
            time.sleep(1 / rate)
    stop.set()
    warm = [rss for t, rss in samples if t >= seconds / 10]
    growth = (warm[-1] - warm[0]) / warm[0] if len(warm) > 1 else float("nan")
    return {"seconds": seconds, "rate_per_s": rate, "requests": sent[0], "failures": len(failures),
            "rss_after_warmup_mb": warm[0] if warm else None, "rss_end_mb": warm[-1] if warm else None,
            "rss_growth_after_warmup": growth, "samples": samples}


def plot_soak(result: dict, path: Path) -> None:
    """RSS over time, with the warm-up boundary marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times, rss = zip(*result["samples"])
    figure, axes = plt.subplots(figsize=(7, 3.2))
    axes.plot(np.array(times) / 60, rss, color="#4c72b0")
    axes.axvline(result["seconds"] / 600, color="gray", linestyle=":", label="end of warm-up")
    axes.set_xlabel("minutes")
    axes.set_ylabel("app RSS (MiB)")
    axes.set_title(f"soak: {result['requests']} requests, RSS growth after warm-up "
                   f"{100 * result['rss_growth_after_warmup']:.1f}%", fontsize=10)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--soak", type=float, default=0, help="seconds of steady load instead (e.g. 1800)")
    parser.add_argument("--rate", type=float, default=1.0, help="soak requests per second")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="t2i-load-") as data:
        write_test_loras(Path(data) / "loras")
        control = write_control_image(Path(data) / "control.png")
        with running_app(Path(data)) as url:
            if args.soak:
                result = soak(url, control, args.soak, args.rate)
                plot_soak(result, RESULTS_DIR / "soak.png")
                print(f"soak: {result['requests']} requests, {result['failures']} failures, RSS "
                      f"{result['rss_after_warmup_mb']:.0f} -> {result['rss_end_mb']:.0f} MiB after warm-up "
                      f"({100 * result['rss_growth_after_warmup']:+.1f}%); plot: bench/results/soak.png")
            else:
                result = load(url, control, args.clients, args.requests)
                print(f"load: {result['clients']} clients, {result['requests']} requests, {result['failures']} "
                      f"failures, p50 {result['p50_s']:.2f} s, p95 {result['p95_s']:.2f} s, "
                      f"{result['throughput_per_s']:.2f} requests/s")
    RESULTS_DIR.mkdir(exist_ok=True)
    name = "soak" if args.soak else "load"
    stamp = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **embedded_model_stamp()}
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps({**stamp, **result, "machine": machine()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
