"""`python -m bench [--quick] [--only NAME ...] [--device cpu|cuda]`: run the benchmarks, print tables, then one
JSON line with the headline figures (engine_overhead, sd15_cpu_speedup, lora_switch_ms, cold_start_s,
batching_speedup, ...).

`--quick` is the set that finishes in under 5 minutes on 2 CPU cores: SD 1.5 by UNet passes rather than whole
images, one cold start, fewer repetitions. Without it every benchmark runs in full (on 2 CPU cores: hours).
Each benchmark also writes bench/results/<name>.json; `python -m bench.plots` draws them.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random-weight architectures and the embedded model: no download
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import torch  # noqa: E402

from . import batching, cold_start, engine_overhead, lora_switch, sd15, vae_decode  # noqa: E402
from .common import Options, machine  # noqa: E402

# cold start first: a child's peak RSS (ru_maxrss) counts the memory it was forked with, so the parent must be small
BENCHMARKS = {"cold_start": cold_start.run, "engine_overhead": engine_overhead.run, "sd15": sd15.run,
              "vae_decode": vae_decode.run, "lora_switch": lora_switch.run, "batching": batching.run}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the under-5-minutes set")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (auto: cuda if available)")
    parser.add_argument("--reps", type=int, default=0, help="timed repetitions of the SD 1.5 runs (0: 2 quick, 3 full)")
    args = parser.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    options = Options(quick=args.quick, device=device, reps=args.reps or (2 if args.quick else 3))
    print(f"machine: {json.dumps(machine())}")
    summary, started = {}, time.perf_counter()
    for name in args.only or BENCHMARKS:
        begun = time.perf_counter()
        summary.update(BENCHMARKS[name](options))
        print(f"  ({name}: {time.perf_counter() - begun:.0f} s)")
    summary.update(quick=args.quick, device=str(device), total_s=round(time.perf_counter() - started, 1))
    print(json.dumps(summary, default=float))


if __name__ == "__main__":
    main()
