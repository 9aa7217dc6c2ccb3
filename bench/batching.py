"""Throughput of queued requests with batching off (T2I_BATCH_MAX=1) and on (T2I_BATCH_MAX=4), embedded model.

N requests with different prompts and seeds (20 steps, CFG 7, Euler, safety off) are submitted together from
one thread each, as a busy server's queue would hand them to the engine; a round ends when all have their
images. Rounds alternate A B A B; images per second from the medians. Also reported: how far a batched image is
from the same request run alone (batching is off by default because it can shift a few pixels by a level).

    python -m bench.batching [--requests 8] [--reps 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import threading
from pathlib import Path

import numpy as np

from .common import Options, interleaved, print_table, write_result

PROMPTS = ["a large red circle in the top left on a blue background", "a blue square on a white background",
           "a small green triangle in the bottom right", "a yellow star in the center on a black background",
           "a purple heart on a white background", "an orange ring in the top right",
           "a pink square in the bottom left on a green background", "a large white circle on a red background"]
STEPS, CFG, BATCH_MAX, WINDOW_MS = 20, 7.0, 4, 30


def run(options: Options, requests: int = 8, reps: int = 0) -> dict:
    """Time N queued requests with batching off and on; write bench/results/batching.json; return the summary."""
    from t2i.generation.engine import Engine
    from t2i.plugins import PluginManager
    from t2i.request import GenerationRequest
    from t2i.settings import Settings

    base = Settings(device=str(options.device), default_model="embedded", entry_point_plugins=False,
                    safety_allow_unchecked_images=True, data_dir=Path(tempfile.mkdtemp(prefix="t2i-bench-")))
    engines = {"batch_max_1": Engine(base, plugins=PluginManager()),
               f"batch_max_{BATCH_MAX}": Engine(dataclasses.replace(base, batch_max=BATCH_MAX,
                                                                   batch_window_ms=WINDOW_MS),
                                                plugins=PluginManager())}
    queue = [GenerationRequest(prompt=PROMPTS[i % len(PROMPTS)], seed=1000 + i, steps=STEPS, cfg=CFG)
             for i in range(requests)]
    outputs: dict[str, list] = {}

    def serve_queue(name):
        def call():
            images = [None] * len(queue)

            def work(index):
                images[index] = engines[name].generate(queue[index]).images[0].image

            threads = [threading.Thread(target=work, args=(i,)) for i in range(len(queue))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            outputs[name] = images
        return call

    timings = interleaved({name: serve_queue(name) for name in engines}, reps=reps or (3 if options.quick else 7))
    throughput = {name: requests / timings[name]["median_s"] for name in engines}
    alone, batched = outputs["batch_max_1"], outputs[f"batch_max_{BATCH_MAX}"]
    differences = [np.abs(np.asarray(a, int) - np.asarray(b, int)) for a, b in zip(alone, batched)]
    fidelity = {"identical_images": sum(int(d.max() == 0) for d in differences), "images": len(differences),
                "max_level_difference": int(max(d.max() for d in differences)),
                "pixels_differing": int(sum((d.max(axis=2) > 0).sum() for d in differences))}
    speedup = throughput[f"batch_max_{BATCH_MAX}"] / throughput["batch_max_1"]
    print_table(f"{requests} queued requests, embedded model, {STEPS} steps, CFG {CFG} "
                f"(median s per queue, images/s)", [(name, timings[name]["median_s"], throughput[name])
                                                     for name in engines])
    print(f"  batched vs alone: {fidelity['identical_images']}/{fidelity['images']} images identical, "
          f"{fidelity['pixels_differing']} pixels differ, by at most {fidelity['max_level_difference']} level(s)")
    summary = {"batching_speedup": speedup, "batching_images_per_s": throughput}
    write_result("batching", {"device": str(options.device), "requests": requests, "steps": STEPS, "cfg": CFG,
                              "batch_max": BATCH_MAX, "window_ms": WINDOW_MS, "timings": timings,
                              "images_per_s": throughput, "batched_vs_alone": fidelity, "summary": summary},
                 model="embedded")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batching", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8, help="requests in the queue")
    parser.add_argument("--reps", type=int, default=5, help="timed rounds of each variant")
    args = parser.parse_args()
    print(json.dumps(run(Options(quick=False), requests=args.requests, reps=args.reps), default=float))


if __name__ == "__main__":
    main()
