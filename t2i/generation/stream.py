"""Running a generation for a front end: progress events while it samples, then the result, in the caller's thread."""

from __future__ import annotations

import queue
import threading
from typing import Iterator

from t2i.generation.engine import Engine, GenerationCancelled, ProgressEvent
from t2i.request import GenerationRequest, GenerationResult


def stream_generation(engine: Engine, request: GenerationRequest,
                      cancel: threading.Event | None = None) -> Iterator[ProgressEvent | GenerationResult]:
    """Run `request` in a worker thread, yielding progress events and then the result.

    Setting `cancel`, or closing the iterator early (a client went away), stops the run at the next step.
    """
    events: queue.Queue = queue.Queue()
    cancel = cancel or threading.Event()
    outcome: dict = {}

    def work():
        try:
            outcome["result"] = engine.generate(request, on_progress=events.put, cancel=cancel)
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc
        finally:
            events.put(None)

    worker = threading.Thread(target=work, name="t2i-generate", daemon=True)
    worker.start()
    try:
        while (event := events.get()) is not None:
            yield event
    finally:
        cancel.set()  # no-op when finished; stops sampling when the consumer left early
        worker.join()
    if "error" in outcome:
        if isinstance(outcome["error"], GenerationCancelled):
            return
        raise outcome["error"]
    yield outcome["result"]
