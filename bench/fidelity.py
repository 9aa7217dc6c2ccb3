"""`python -m bench.fidelity [--speed quality] [--steps 20]`: the prompt-fidelity benchmark (`python -m t2i eval`)
on the embedded model, saved with the model it measured.

Runs `t2i.eval.benchmark.run_benchmark` under one `T2I_SPEED` setting and stores its numbers in
bench/results/fidelity.json under that setting (other settings' runs in the file are kept), stamped with the
model's hash (the recipe's "Model hash"), the time and the machine. BENCHMARKS.md's fidelity table and the
README's fidelity figures are generated from that file (`python scripts/docs_figures.py --write`).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fidelity", description=__doc__.splitlines()[0])
    parser.add_argument("--speed", default="quality", help="the T2I_SPEED setting to measure (quality, fast, ...)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--single", type=int, default=200, help="number of single-object prompts")
    parser.add_argument("--pairs", type=int, default=100, help="number of two-object prompts")
    parser.add_argument("--speed-runs", type=int, default=7)
    args = parser.parse_args()
    os.environ["T2I_SPEED"] = args.speed  # the engine's Settings read it

    from t2i.eval.benchmark import run_benchmark

    from .common import RESULTS_DIR, embedded_model_stamp, machine

    started = time.perf_counter()
    numbers = run_benchmark(model="embedded", steps=args.steps, n_single=args.single, n_pairs=args.pairs,
                            speed_runs=args.speed_runs)
    path = RESULTS_DIR / "fidelity.json"
    saved = json.loads(path.read_text()) if path.exists() else {"benchmark": "fidelity", "runs": {}}
    saved["runs"][args.speed] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **embedded_model_stamp(),
        "command": f"T2I_SPEED={args.speed} python -m bench.fidelity --steps {args.steps} --single {args.single} "
                   f"--pairs {args.pairs}",
        "wall_s": round(time.perf_counter() - started, 1), "machine": machine(), "results": numbers}
    path.write_text(json.dumps(saved, indent=1, sort_keys=False) + "\n")
    print(f"saved under {args.speed!r} in {path}")


if __name__ == "__main__":
    main()
