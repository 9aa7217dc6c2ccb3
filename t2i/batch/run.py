"""A dataset run: rows in, a dataset folder out, locally or on Ray Data, resumable (`python -m t2i batch`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from t2i.settings import Settings

from t2i.batch.rows import parse_rows, read_jsonl
from t2i.batch.store import DatasetFolder


@dataclass
class BatchSummary:
    """What one run did: rows skipped as already done, written, withheld and failed (ids of the failed)."""

    total: int
    skipped: int = 0
    written: int = 0
    withheld: int = 0
    failed: list[str] = dataclasses.field(default_factory=list)


def run_batch(rows_path: Path, out: Path, settings: Settings, *, use_ray: bool = False, actors: int = 2,
              actor_cpus: float = 0.5, actor_gpus: float = 0.0, batch_size: int = 4,
              show_progress: bool = True, format: str = "parquet") -> BatchSummary:
    """Generate the rows of `rows_path` not yet in `out` (every row checked first: a bad one stops the run)."""
    values = read_jsonl(rows_path)
    rows = parse_rows(values, settings)
    folder = DatasetFolder(out, format)
    done = folder.done_ids()
    todo = [value for value, row in zip(values, rows) if row.id not in done]
    summary = BatchSummary(total=len(rows), skipped=len(rows) - len(todo))
    with tqdm(total=len(rows), initial=summary.skipped, unit="image", disable=not show_progress) as bar:
        for table in _tables(todo, settings, use_ray, actors, actor_cpus, actor_gpus, batch_size):
            written, withheld, _ = folder.add(table)
            summary.written += written
            summary.withheld += withheld
            summary.failed += table.loc[table["status"] == "failed", "id"].tolist()
            bar.update(len(table))
    return summary


def _tables(todo: list[dict], settings: Settings, use_ray: bool, actors: int, actor_cpus: float,
            actor_gpus: float, batch_size: int):
    """generate_rows tables for the rows to do, batch by batch, from this process or from Ray actors."""
    if not todo:
        return
    if use_ray:
        import ray

        from t2i.batch.on_ray import connect, generate_on_ray

        started = connect(settings)
        try:
            yield from generate_on_ray(todo, settings, actors, actor_cpus, actor_gpus, batch_size)
        finally:
            if started:
                ray.shutdown()
        return
    from t2i.batch.generate import generate_rows
    from t2i.generation.engine import Engine
    from t2i.recipes.labels import Labeller

    engine, labeller = Engine(settings), Labeller.from_settings(settings)
    for start in range(0, len(todo), batch_size):
        yield generate_rows(todo[start:start + batch_size], engine, labeller)
