"""Batching: compatible requests waiting for the same model run as one group (opt-in, T2I_BATCH_MAX).

A request can share a call when its batch count is 1 and its model, mode, sampler, steps, CFG (and distilled
guidance), size, strength and plugin units (LoRAs, ControlNet units) equal the others', images apart: init images,
masks and control images differ per request and are passed one per image (t2i/generation/run.py runs the
group). A shareable
request joins a queue and waits up to T2I_BATCH_WINDOW_MS for companions; then whichever queued request's thread
gets the model lock takes every compatible waiting request (up to T2I_BATCH_MAX images) and runs them together.
Prompts whose embeddings have another length (such as long prompts) get a call of their own.

A request that cancels while it waits leaves the queue; once taken, the running group drops its images.

Off by default: CPU kernels sum in another order at another batch size, so a batched image can differ from the
same request run alone by a level in a few pixels, and t2i promises the same bytes for the same request.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

from t2i.generation.inpaint_area import LATENT_CONTENT, ONLY_MASKED
from t2i.generation.prepared import PreparedRequest
from t2i.generation.run import Member, Runner
from t2i.generation.progress import GenerationCancelled, ProgressCallback
from t2i.request import REQUEST_FIELDS, GenerationResult
from t2i.settings import Settings

POLL_S = 0.02  # how often a waiting request looks at its cancel event and tries the model lock


@dataclass(frozen=True)
class BatchKey:
    """What requests must share to run as one call."""

    model_id: int
    mode: str
    sampler: str
    steps: int
    cfg: float
    distilled_cfg: float  # the call's guidance arguments are shared (t2i/generation/prepared.py guidance())
    width: int
    height: int
    strength: float | None  # None for txt2img
    units: str  # plugin units without their images, as sorted JSON


def batch_key(prepared: PreparedRequest) -> BatchKey | None:
    """The key a request shares with those it can be batched with; None when it must run alone."""
    request = prepared.request
    if request.batch_count != 1:
        return None
    if request.hires_enabled or request.vae != REQUEST_FIELDS["vae"].default:  # own second pass or decoder
        return None
    if request.inpaint_area == ONLY_MASKED or request.masked_content in LATENT_CONTENT:
        return None  # its own crop of its own image, or its own latents (t2i/generation/inpaint_area.py)
    plain = {plugin.name: [{name: value for name, value in unit.items() if name not in _image_params(plugin)}
                           for unit in units] for plugin, units in prepared.used}
    try:
        units = json.dumps(plain, sort_keys=True)
    except TypeError:  # a unit value that is not plain data cannot be compared safely
        return None
    strength = request.strength if request.init_image is not None else None
    return BatchKey(id(prepared.model), request.mode, request.sampler, request.steps, request.cfg,
                    request.distilled_cfg, prepared.width, prepared.height, strength, units)


def _image_params(plugin) -> set[str]:
    return {param.name for param in plugin.params if param.type == "image"}


@dataclass(eq=False)
class Waiting:
    """A member in the queue, with the key it shares."""

    member: Member
    key: BatchKey
    enqueued: float = field(default_factory=time.monotonic)
    taken: bool = False  # a leader took it into a call (changed under the Batcher's condition)

    @property
    def image_count(self) -> int:
        return self.member.image_count


class Batcher:
    """The queue of shareable requests of one engine; the thread that gets a model's lock runs its companions."""

    def __init__(self, runner: Runner, settings: Settings):
        self.runner = runner
        self.max_images = settings.batch_max
        self.window_s = settings.batch_window_ms / 1000
        self._changed = threading.Condition()  # guards _waiting and every Waiting.taken
        self._waiting: list[Waiting] = []

    def accepts(self, prepared: PreparedRequest) -> bool:
        """Whether batching is on and this request could share a call with another."""
        return (self.max_images > 1 and prepared.request.batch_size < self.max_images
                and batch_key(prepared) is not None)

    def submit(self, prepared: PreparedRequest, on_progress: ProgressCallback | None = None,
               cancel: threading.Event | None = None) -> GenerationResult:
        """Queue a request, run it with any compatible companions, and return its own result."""
        member = Member(prepared, on_progress, cancel or threading.Event())
        waiting = Waiting(member, batch_key(prepared))
        with self._changed:
            self._waiting.append(waiting)
            self._changed.notify_all()
            deadline = waiting.enqueued + self.window_s
            while (not waiting.taken and self._queued_images(waiting.key) < self.max_images
                   and (left := deadline - time.monotonic()) > 0):
                self._changed.wait(left)
        lock = prepared.model.lock
        while not waiting.taken:
            if member.cancel.is_set() and self._withdraw(waiting):
                raise GenerationCancelled("generation cancelled")
            if lock.acquire(timeout=POLL_S):
                try:
                    group = self._take(waiting)  # empty when another thread's call took this request meanwhile
                    if group:
                        self.runner.run(group)
                finally:
                    lock.release()
        while not member.done.wait(POLL_S):
            if member.cancel.is_set():  # the running call drops this request's images
                raise GenerationCancelled("generation cancelled")
        return member.outcome()

    def _queued_images(self, key: BatchKey) -> int:
        return sum(w.image_count for w in self._waiting if w.key == key)

    def _withdraw(self, waiting: Waiting) -> bool:
        with self._changed:
            if waiting.taken:
                return False
            self._waiting.remove(waiting)
            return True

    def _take(self, waiting: Waiting) -> list[Member]:
        """`waiting`'s member and the compatible waiting ones after it in arrival order, up to the image limit."""
        with self._changed:
            if waiting.taken:
                return []
            group, images = [waiting], waiting.image_count
            for other in self._waiting:
                if (other is not waiting and other.key == waiting.key and not other.member.cancel.is_set()
                        and images + other.image_count <= self.max_images):
                    group.append(other)
                    images += other.image_count
            for taken in group:
                taken.taken = True
                self._waiting.remove(taken)
            self._changed.notify_all()
            return [taken.member for taken in group]
