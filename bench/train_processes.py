"""Training step time with 1 and 2 processes (T2I_TRAIN_PROCESSES; gloo on CPU), side by side in one run, on the
embedded model, as the runner launches the trainer.

    python -m bench.train_processes [--steps 24] [--batch-size 2]

One torch thread per process (T2I_TRAIN_THREADS = processes): on a shared machine 2 threads in one process thrash
(PITFALLS), so 1 process x 1 thread is the baseline for 2 processes x 1 thread. Each process trains --batch-size
images per step, so a 2-process step trains twice the images; the result gives both the step time and images per
second. Rounds alternate 1, 2, 1, 2 (--rounds); the first 3 steps of each run are warm-up.
Writes bench/results/train_processes.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import subprocess
import tempfile
from pathlib import Path

from .common import print_table, write_result

WARMUP = 3


def _run_folder(folder: Path, steps: int, batch_size: int) -> None:
    from t2i.embedded.world import SHAPES, Scene, ShapeObject, render
    from t2i.train.config import config_from_preset
    from t2i.train.dataset import prepare_dataset

    images = folder / "images"
    images.mkdir(parents=True)
    rng = random.Random(0)
    for i in range(8):
        shape, colour = rng.choice(SHAPES), rng.choice(["red", "yellow", "white"])
        render(Scene((ShapeObject(shape, colour, "large"),), "teal")).save(images / f"{i}.png")
        (images / f"{i}.txt").write_text(f"a large {colour} {shape}")
    config = config_from_preset(name="bench", trigger="tlq", steps=steps, batch_size=batch_size, rank=4, alpha=4.0,
                                checkpoint_every=10_000, sample_every=0, prior_preservation=False)
    run = folder / "run"
    prepare_dataset([images]).save(run / "dataset")
    (run / "config.json").write_text(config.to_json())


def _step_seconds(processes: int, folder: Path, steps: int, batch_size: int) -> list[float]:
    from t2i.settings import Settings
    from t2i.train.launch import trainer_command, trainer_environment

    scratch = Path(tempfile.mkdtemp(prefix=f"p{processes}-", dir=folder))
    _run_folder(scratch, steps, batch_size)
    settings = dataclasses.replace(Settings(), train_processes=processes)
    environment = {**trainer_environment(settings), "T2I_TRAIN_THREADS": str(processes), "T2I_DEVICE": "cpu",
                   "HF_HUB_OFFLINE": "1", "T2I_TRAIN_LOCK": str(scratch / "train.lock")}
    environment.pop("OMP_NUM_THREADS", None)  # the trainer sets its threads from T2I_TRAIN_THREADS
    done = subprocess.run(trainer_command(scratch / "run", scratch / "loras", settings), env=environment,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {processes}-process trainer failed:\n{done.stderr[-3000:]}")
    events = [json.loads(line) for line in (scratch / "run" / "progress.jsonl").read_text().splitlines()]
    return [event["seconds"] for event in events if event["event"] == "step"][WARMUP:]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.train_processes", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="runs of each process count, alternated")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    times: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.rounds):
            for processes in (1, 2):
                times[processes] += _step_seconds(processes, Path(scratch), args.steps, args.batch_size)
    results = {}
    for processes, seconds in times.items():
        median = statistics.median(seconds)
        results[str(processes)] = {"step_median_s": round(median, 4), "steps_s": seconds,
                                   "images_per_s": round(processes * args.batch_size / median, 2)}
    one, two = results["1"], results["2"]
    result = {"steps": args.steps, "warmup_steps": WARMUP, "batch_size_per_process": args.batch_size,
              "threads_per_process": 1, "rounds": args.rounds, "processes": results,
              "step_time_ratio_2_over_1": round(two["step_median_s"] / one["step_median_s"], 3),
              "throughput_ratio_2_over_1": round(two["images_per_s"] / one["images_per_s"], 3)}
    write_result("train_processes", result, "embedded")
    print_table(f"LoRA training step (batch {args.batch_size} per process, 1 thread each)", [
        ("1 process, step s", one["step_median_s"]), ("2 processes, step s", two["step_median_s"]),
        ("images/s ratio 2:1", result["throughput_ratio_2_over_1"])])
    print(json.dumps({k: v for k, v in result.items() if k != "processes"}))


if __name__ == "__main__":
    main()
