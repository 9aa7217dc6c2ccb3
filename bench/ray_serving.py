"""Throughput of the studio on Ray Serve with 1 and 2 engine replicas (T2I_BACKEND=ray), embedded model.

Two Serve applications side by side on one local cluster, one with 1 replica and one with 2 (each replica 1 torch
thread, 0.5 logical CPU, safety off); N requests with different prompts and seeds (20 steps, CFG 7) are sent
together through each application's RayEngine, rounds interleaved A B A B; images per second from the medians,
and the ratio. The images of both must be byte-identical. Runs in a loopback-only network namespace (it re-runs
itself under `unshare -n` when it is not in one; that needs root).

    OMP_NUM_THREADS=1 python -m bench.ray_serving [--requests 8] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .common import Options, interleaved, print_table, write_result
from .batching import CFG, PROMPTS, STEPS

REPLICAS = (1, 2)


def run(options: Options, requests: int = 8, reps: int = 0) -> dict:
    """Time N concurrent requests on 1 and 2 replicas; write bench/results/ray_serving.json; return the summary."""
    import ray

    from t2i.generation.engine import Engine
    from t2i.plugins import PluginManager
    from t2i.ray.backend import RayEngine
    from t2i.request import GenerationRequest
    from t2i.settings import Settings

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        base = dict(device=str(options.device), default_model="embedded", entry_point_plugins=False,
                    safety_allow_unchecked_images=True, data_dir=Path(tempfile.mkdtemp(prefix="t2i-bench-")),
                    backend="ray", ray_replica_cpus=0.5, ray_max_ongoing=2)
        front = Engine(Settings(**base), plugins=PluginManager())  # routing only: it runs no model
        engines = {f"{n}_replica{'s' * (n > 1)}": RayEngine(Settings(**base, ray_replicas=str(n)), front,
                                                             app_name=f"bench-{n}") for n in REPLICAS}
        queue = [GenerationRequest(prompt=PROMPTS[i % len(PROMPTS)], seed=1000 + i, steps=STEPS, cfg=CFG)
                 for i in range(requests)]
        outputs: dict[str, list[bytes]] = {}

        def serve_queue(name):
            def call():
                with ThreadPoolExecutor(len(queue)) as pool:
                    results = list(pool.map(engines[name].generate, queue))
                outputs[name] = [result.images[0].image.tobytes() for result in results]
            return call

        timings = interleaved({name: serve_queue(name) for name in engines}, reps=reps or (2 if options.quick else 5))
        throughput = {name: requests / timings[name]["median_s"] for name in engines}
        one, two = engines
        served = {name: sorted(engine.served.values()) for name, engine in engines.items()}
        same = outputs[one] == outputs[two]
        for engine in engines.values():
            engine.close()
    finally:
        ray.shutdown()
    speedup = throughput[two] / throughput[one]
    print_table(f"{requests} concurrent requests on Ray Serve, embedded model, {STEPS} steps, CFG {CFG} "
                f"(median s per queue, images/s)", [(name, timings[name]["median_s"], throughput[name])
                                                     for name in engines])
    print(f"  2 replicas / 1: {speedup:.2f}x; requests per replica {served}; images identical: {same}")
    summary = {"ray_2_vs_1_replicas": speedup, "ray_images_per_s": throughput, "images_identical": same}
    write_result("ray_serving", {"device": str(options.device), "requests": requests, "steps": STEPS, "cfg": CFG,
                                 "replica_cpus": 0.5, "torch_threads_per_replica": 1, "timings": timings,
                                 "images_per_s": throughput, "requests_per_replica": served, "summary": summary},
                 model="embedded")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_serving", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8, help="requests sent at once")
    parser.add_argument("--reps", type=int, default=3, help="timed rounds of each variant")
    args = parser.parse_args()
    from t2i.ray.loopback import loopback_command, loopback_environment, only_loopback, unavailable_reason

    if not only_loopback():  # Ray binds every interface: run again where loopback is the only one
        reason = unavailable_reason()
        if reason or os.environ.get("T2I_BENCH_REEXEC"):  # never more than one re-run
            raise SystemExit(f"bench.ray_serving: {reason or 'still not in a loopback-only namespace'}")
        root = Path(__file__).resolve().parent.parent
        raise SystemExit(subprocess.run(loopback_command([sys.executable, "-m", "bench.ray_serving", *sys.argv[1:]]),
                                        cwd=root, env=loopback_environment(HF_HUB_OFFLINE="1", T2I_BENCH_REEXEC="1")).returncode)
    print(json.dumps(run(Options(quick=False), requests=args.requests, reps=args.reps), default=float))


if __name__ == "__main__":
    main()
