"""`python -m t2i batch ROWS.jsonl --out DIR [--ray] [--format webdataset]`: the command line of dataset generation (t2i/batch/run.py).

Light to import: the command line builds its parser on every call; pandas, pyarrow and the engine load when it runs.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from t2i.request import RequestError
from t2i.settings import Settings

WITHHELD, FAILED = "withheld.jsonl", "failed.jsonl"  # in the dataset folder (t2i/batch/store.py writes them)


def add_batch_parser(sub) -> None:
    """The `batch` subcommand of the t2i command line."""
    batch = sub.add_parser("batch", help="generate a dataset (Parquet) from a JSONL file of rows; resumable")
    batch.add_argument("rows", type=Path, help="JSONL: one {id, prompt, negative_prompt, seed, steps, cfg, sampler, "
                                               "model, loras} object per line (id, prompt and seed required)")
    batch.add_argument("--out", type=Path, required=True, help="dataset folder (Parquet parts, withheld.jsonl)")
    batch.add_argument("--ray", action="store_true", help="run on Ray Data (T2I_RAY_ADDRESS; empty: this machine)")
    batch.add_argument("--actors", type=int, default=2, help="Ray: engine actors (default 2)")
    batch.add_argument("--actor-cpus", type=float, default=0.5, help="Ray: CPUs each actor reserves (default 0.5)")
    batch.add_argument("--actor-gpus", type=float, default=0.0, help="Ray: GPUs each actor reserves (default 0)")
    batch.add_argument("--batch-size", type=int, default=4, help="rows per Parquet part and per actor call")
    batch.add_argument("--format", choices=["parquet", "webdataset"], default="parquet",
                       help="parts as Parquet files (default) or WebDataset tar shards (KEY.png/.txt/.json/.id/.sha256)")
    batch.set_defaults(run=_batch)


def _batch(args) -> int:
    if args.batch_size < 1 or args.actors < 1 or args.actor_cpus <= 0 or args.actor_gpus < 0:
        raise RequestError("--batch-size and --actors must be at least 1, --actor-cpus more than 0, "
                           "--actor-gpus at least 0")
    # the person at the command line owns the machine: LoRAs may be named by file path, as in `generate`
    settings = dataclasses.replace(Settings(), lora_local_paths=True)
    from t2i.batch.run import run_batch

    summary = run_batch(args.rows, args.out, settings, use_ray=args.ray, actors=args.actors,
                        actor_cpus=args.actor_cpus, actor_gpus=args.actor_gpus, batch_size=args.batch_size,
                        format=args.format)
    print(f"{args.out}: {summary.written} written, {summary.withheld} withheld (listed in {WITHHELD}), "
          f"{len(summary.failed)} failed, {summary.skipped} already there", file=sys.stderr)
    if summary.failed:
        raise RequestError(f"{len(summary.failed)} row(s) failed (listed in {args.out / FAILED}, first: "
                           f"{summary.failed[0]}); run the command again to retry them")
    return 0
