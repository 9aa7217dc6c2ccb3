"""The REST APIs' generations, by caller: each runs the Studio's one path in a worker thread, stops when its client
goes away, and can be watched (/progress) and stopped (/interrupt, /skip) by its own caller only."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import anyio
from PIL import Image
from starlette.requests import Request

from t2i.api.auth import Caller
from t2i.generation.engine import ProgressEvent
from t2i.request import GenerationResult
from t2i.studio import GenerateForm, Studio

SPARE_THREADS = 8  # beyond every running and waiting place: requests refused at once still need a thread briefly


@dataclass(eq=False)
class Job:
    """One API generation: whose it is, how far it got, and its cancel switch."""

    caller: Caller
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: ProgressEvent | None = None
    preview: Image.Image | None = None
    started: float = field(default_factory=time.time)


class Jobs:
    """Runs API generations and keeps each caller's running ones."""

    def __init__(self, studio: Studio):
        self.studio = studio
        admission = studio.admission
        # a thread per running or waiting job, apart from the shared pool, so that waiting jobs never starve the
        # page's or the routes' other work of threads
        self._threads = anyio.CapacityLimiter(admission.limit + admission.queue_size + SPARE_THREADS)
        self._jobs: dict[str, list[Job]] = {}
        self._lock = threading.Lock()

    async def run(self, caller: Caller, form: GenerateForm, request: Request) -> GenerationResult | None:
        """Run `form` for `caller`: its result, or None when it was interrupted or its client went away.

        A full queue is refused at once (QueueFull), before a thread is taken; the Studio's errors pass through.
        """
        self.studio.admission.refuse_if_full()
        job = Job(caller)
        with self._lock:
            self._jobs.setdefault(caller.session, []).append(job)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._cancel_on_disconnect, request, job)
                outcome = await anyio.to_thread.run_sync(self._work, job, form, limiter=self._threads)
                tasks.cancel_scope.cancel()
        finally:
            with self._lock:
                self._jobs[caller.session].remove(job)
                if not self._jobs[caller.session]:
                    del self._jobs[caller.session]
        if isinstance(outcome, Exception):  # raised here, not from inside the task group (no ExceptionGroup)
            raise outcome
        return outcome

    def _work(self, job: Job, form: GenerateForm) -> GenerationResult | Exception | None:
        """The Studio's run of `form` in this worker thread: its result, None, or the error it raised."""
        result = None
        try:
            for event in self.studio.run(form, job.caller.session, job.caller.address, job.cancel):
                if isinstance(event, GenerationResult):
                    result = event
                    continue
                job.progress = event
                if event.previews and event.previews[0] is not None:
                    job.preview = event.previews[0]
        except Exception as error:
            return error
        return result

    async def _cancel_on_disconnect(self, request: Request, job: Job) -> None:
        """Stop the job when its client closes the connection (the body has been read: only a disconnect comes)."""
        while (await request.receive())["type"] != "http.disconnect":
            pass
        self._stop([job])

    def running(self, caller: Caller) -> list[Job]:
        """The caller's jobs, oldest first."""
        with self._lock:
            return list(self._jobs.get(caller.session, ()))

    def interrupt(self, caller: Caller) -> int:
        """Stop every job of the caller (running or waiting); how many there were."""
        jobs = self.running(caller)
        self._stop(jobs)
        return len(jobs)

    def _stop(self, jobs: list[Job]) -> None:
        for job in jobs:
            job.cancel.set()
        self.studio.admission.wake()
