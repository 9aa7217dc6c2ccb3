"""Cold start: process start to the first image with the embedded model, and the process's peak memory.

Two ways in: the CLI (`python -m t2i generate`, which exits after writing the PNG) and the app (`python app.py`,
first image fetched through its API with gradio_client). Peak memory is the process's peak resident set
(ru_maxrss of the CLI, VmHWM of the app). Default settings, so the built-in safety checkers load too.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import BENCH_DIR, Options, print_table, write_result

ROOT = BENCH_DIR.parent
PROMPT = "a small red star in the top left corner on a blue background"


def run(options: Options) -> dict:
    """Start the CLI and the app from cold; write bench/results/cold_start.json; return the summary."""
    reps = 1 if options.quick else 3
    cli = [cli_once(options) for _ in range(reps)]
    app = [app_once(options) for _ in range(reps)]
    result = {"cli": cli, "app": app}
    medians = {f"{where}_{key}": statistics.median(r[key] for r in runs)
               for where, runs in result.items() for key in ("seconds", "peak_rss_mb")}
    print_table("cold start, embedded model, 20 steps (median)",
                [(name, value) for name, value in medians.items()])
    summary = {"cold_start_s": medians["app_seconds"], "peak_rss_mb": medians["app_peak_rss_mb"],
               "cli_cold_start_s": medians["cli_seconds"], "cli_peak_rss_mb": medians["cli_peak_rss_mb"]}
    write_result("cold_start", {"device": str(options.device), **result, "medians": medians, "summary": summary},
                 model="embedded")
    return summary


def _env(data_dir: str, options: Options) -> dict:
    return {**os.environ, "T2I_DATA_DIR": data_dir, "T2I_DEVICE": str(options.device), "T2I_RATE_LIMIT": "0",
            "T2I_ENTRY_POINT_PLUGINS": "0", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}


def cli_once(options: Options) -> dict:
    """One `python -m t2i generate` run: wall seconds and peak RSS."""
    data_dir = tempfile.mkdtemp(prefix="t2i-bench-cold-")
    out = Path(data_dir) / "first.png"
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "t2i", "generate", PROMPT, "-o", str(out), "--seed", "1",
                                "--steps", "20"], cwd=ROOT, env=_env(data_dir, options),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0 or not out.exists():
        raise RuntimeError(f"the CLI failed: {process.stderr.read().decode()[-500:]}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024}  # ru_maxrss is in KiB on Linux


def app_once(options: Options) -> dict:
    """One `python app.py` start, up to the first image received through its API: seconds and peak RSS."""
    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data_dir = tempfile.mkdtemp(prefix="t2i-bench-app-")
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=_env(data_dir, options),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.perf_counter() - start > 300:
                    raise RuntimeError("the app did not start")
                time.sleep(0.1)
        listening_s = time.perf_counter() - start
        _, images, _, _ = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
            prompt=PROMPT, seed=1, steps=20, api_name="/generate")
        seconds = time.perf_counter() - start
        if not images:
            raise RuntimeError("the app returned no image")
        peak_kib = int(next(line.split()[1] for line in Path(f"/proc/{process.pid}/status").read_text().splitlines()
                            if line.startswith("VmHWM")))
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {"seconds": seconds, "listening_s": listening_s, "peak_rss_mb": peak_kib / 1024}
