"""Dataset generation on Ray Data: stateful actors, each holding one Engine, run `generate_rows` on batches.

The driver streams the finished batches back and stores them itself (t2i/batch/store.py), so the dataset folder
needs to be on the driver's disk only; the models and the LoRA library must be readable by every node.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator

import pandas as pd
import ray

from t2i.settings import Settings


class EngineActor:
    """A Ray Data actor: loads the Engine once, then turns batches of rows (JSON text) into generate_rows tables."""

    def __init__(self, settings: Settings, threads: int):
        import torch

        from t2i.generation.engine import Engine
        from t2i.recipes.labels import Labeller

        torch.set_num_threads(threads)
        self.engine = Engine(settings)
        self.labeller = Labeller.from_settings(settings)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from t2i.batch.generate import generate_rows

        return generate_rows([json.loads(text) for text in batch["row"]], self.engine, self.labeller)


def connect(settings: Settings) -> bool:
    """Join T2I_RAY_ADDRESS, or start a one-machine cluster when it is empty; True when this call started Ray."""
    if ray.is_initialized():
        return False
    if settings.ray_address:
        ray.init(address=settings.ray_address, include_dashboard=False, log_to_driver=False)
    else:
        # logical CPUs: on 2 cores the read task and 0.5-CPU actors must all fit, or Ray Data stalls (PITFALLS)
        ray.init(address="local", num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False,
                 log_to_driver=False)
    return True


def generate_on_ray(rows: list[dict], settings: Settings, actors: int, actor_cpus: float = 0.5,
                    actor_gpus: float = 0.0, batch_size: int = 4) -> Iterator[pd.DataFrame]:
    """generate_rows tables for `rows`, computed by `actors` Engine actors on the Ray cluster, as they finish."""
    from ray.data import ActorPoolStrategy, DataContext

    DataContext.get_current().enable_progress_bars = False  # the command shows one bar of its own
    # one block per batch: an actor takes a whole block, so a single block would keep the other actors idle
    dataset = ray.data.from_items([{"row": json.dumps(row)} for row in rows],
                                  override_num_blocks=max(1, math.ceil(len(rows) / batch_size)))
    dataset = dataset.map_batches(
        EngineActor, fn_constructor_kwargs={"settings": settings, "threads": max(1, math.floor(actor_cpus))},
        compute=ActorPoolStrategy(size=actors), batch_size=batch_size, batch_format="pandas",
        num_cpus=actor_cpus, num_gpus=actor_gpus)
    yield from dataset.iter_batches(batch_size=None, batch_format="pandas")
