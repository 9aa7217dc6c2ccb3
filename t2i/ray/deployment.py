"""The Ray Serve deployment: each replica holds an Engine and streams one request's progress and result.

What a replica yields, in order: Started (who runs it), ProgressEvents, then Finished or Refused. A RequestError
travels inside Refused rather than raised, so the front end re-raises the very error (class and message); a raised
exception would arrive wrapped in Ray's own type with a traceback in its message.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import threading
from dataclasses import dataclass

import torch
from ray import serve

from t2i.generation.engine import Engine
from t2i.generation.progress import GenerationCancelled
from t2i.request import GenerationRequest, GenerationResult, RequestError
from t2i.settings import Settings

_END = object()  # the worker thread is done


@dataclass
class Started:
    """The request reached a replica: its Serve id and process id."""

    replica: str
    pid: int


@dataclass
class Finished:
    """The request's result, and the replica that made it."""

    result: GenerationResult
    replica: str


@dataclass
class Refused:
    """The engine refused the request; the RequestError's message is meant for the user."""

    error: RequestError


def _portable(error: RequestError) -> RequestError:
    """`error` if it survives pickling (a plugin's subclass may not), else a plain RequestError with its message."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RequestError(str(error))


@serve.deployment(name="EngineReplica")
class EngineReplica:
    """One engine in a replica process; requests with the same routing id prefer the replica that ran them."""

    def __init__(self, settings: Settings):
        # a replica reserves settings.ray_replica_cpus; more torch threads than that would fight its neighbours
        torch.set_num_threads(max(1, int(settings.ray_replica_cpus)))
        self.engine = Engine(settings)
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.runs = {"running": 0, "finished": 0, "refused": 0, "stopped": 0, "failed": 0}

    # Serve's per-replica LRU of routing ids only steers requests; memory stays bounded by the engine's own caches
    # (T2I_MODEL_CACHE_SIZE models, T2I_LORA_CACHE_SIZE adapters per model). 8 is the adapter cache's default.
    @serve.multiplexed(max_num_models_per_replica=8)
    async def load(self, model_id: str) -> str:
        """Load the routing id's base model (its LoRAs load on first use, into the adapter LRU)."""
        model = model_id.rpartition("|")[0]  # backend.routing_id: MODEL|ADAPTERS
        try:
            await asyncio.to_thread(self.engine.models.get, model)
        except RequestError:  # a model this server cannot load: the request's run refuses it with the message
            pass
        return model_id

    async def generate(self, request: GenerationRequest):
        """Run `request` on this replica's engine: Started, ProgressEvents, then Finished or Refused.

        Cancelling the stream (the front end's Stop, or a client gone) stops the run at its next step.
        """
        yield Started(self.replica, os.getpid())
        await self.load(serve.get_multiplexed_model_id())
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()

        def put(item) -> None:
            loop.call_soon_threadsafe(events.put_nowait, item)

        def work() -> str:
            """The engine run, its messages queued for the generator; returns how it ended."""
            try:
                put(Finished(self.engine.generate(request, on_progress=put, cancel=cancel), self.replica))
                return "finished"
            except RequestError as exc:
                put(Refused(_portable(exc)))
                return "refused"
            except GenerationCancelled:
                return "stopped"
            except BaseException as exc:  # raised in the generator below, so Ray reports it
                put(exc)
                return "failed"
            finally:
                put(_END)

        self.runs["running"] += 1  # counted here, in the event loop's thread, never in workers
        worker = loop.run_in_executor(None, work)
        try:
            while (item := await events.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()  # no-op when finished
            outcome = await asyncio.shield(worker)  # the request counts until its engine run has ended
            self.runs["running"] -= 1
            self.runs[outcome] += 1

    async def state(self) -> dict:
        """This replica's id and its engine runs so far: running, finished, refused, stopped (by Stop), failed."""
        return {"replica": self.replica, **self.runs}
