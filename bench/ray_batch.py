"""Dataset generation: 200 images with `python -m t2i batch` locally (one process) and on Ray Data (2 engine
actors), side by side in one run, inside a loopback-only network namespace (Ray binds to every interface).

    python -m bench.ray_batch [--images 200] [--steps 10] [--actors 2]

Each variant is the whole command as a user runs it (start, model load, images, Parquet), one torch thread per
engine (OMP_NUM_THREADS=1; the actors take 0.5 logical CPU each). The two datasets must hold the same bytes.
Writes bench/results/ray_batch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import print_table, write_result

ROOT = Path(__file__).resolve().parent.parent
COLOURS = ["red", "green", "blue", "yellow", "white", "black"]
SHAPES = ["circle", "square", "triangle", "star"]


def _rows(path: Path, count: int, steps: int) -> None:
    lines = [{"id": f"img-{i:04d}", "prompt": f"a large {COLOURS[i % 6]} {SHAPES[i // 6 % 4]} on a grey background",
              "seed": i, "steps": steps} for i in range(count)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def _timed(command: list[str]) -> float:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "T2I_DEVICE": "cpu",
                   "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    done = subprocess.run(command, env=environment, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[3:])} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_batch", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--actors", type=int, default=2)
    args = parser.parse_args()
    from t2i.ray.loopback import loopback_command, only_loopback, unavailable_reason

    if not only_loopback():  # run this whole benchmark again inside a loopback-only namespace
        if reason := unavailable_reason():
            raise SystemExit(f"cannot run Ray here: {reason}")
        os.execvp("unshare", loopback_command([sys.executable, "-m", "bench.ray_batch", *sys.argv[1:]]))
    from t2i.batch.store import DatasetFolder

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        _rows(folder / "rows.jsonl", args.images, args.steps)
        command = [sys.executable, "-m", "t2i", "batch", str(folder / "rows.jsonl"), "--batch-size", "4"]
        local_s = _timed([*command, "--out", str(folder / "local")])
        ray_s = _timed([*command, "--out", str(folder / "ray"), "--ray", "--actors", str(args.actors)])
        local, on_ray = (DatasetFolder(folder / name).read().set_index("id")["sha256"].sort_index()
                         for name in ("local", "ray"))
        same = local.to_dict() == on_ray.to_dict()
    result = {"images": args.images, "steps": args.steps, "actors": args.actors, "local_s": round(local_s, 2),
              "ray_s": round(ray_s, 2), "speedup": round(local_s / ray_s, 3), "same_bytes": same,
              "images_written": {"local": len(local), "ray": len(on_ray)}}
    write_result("ray_batch", result, "embedded")
    print_table(f"dataset of {args.images} images ({args.steps} steps), whole command", [
        ("local, 1 process", local_s), (f"Ray Data, {args.actors} actors", ray_s),
        ("speedup", local_s / ray_s), ("same bytes", str(same))])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
