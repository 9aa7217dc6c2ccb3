"""Batching: compatible requests waiting for the same model run as one pipeline call (opt-in, T2I_BATCH_MAX).

A request can share a call when it is txt2img with one batch, and its model, sampler, steps, CFG, size and
adapter units (e.g. LoRAs) equal the others'; a request with conditioner units (ControlNet images) or an init
image runs alone as before. A shareable request joins a queue and waits up to T2I_BATCH_WINDOW_MS for
companions; then whichever queued request's thread gets the model lock takes every compatible waiting request
(up to T2I_BATCH_MAX images) and runs them together: prompt embeddings concatenated (prompts whose embeddings
have another length, such as long prompts, get a call of their own), one CPU generator per image so each image
keeps its seed's noise. Each request gets its own images, previews, recipe and safety screening.

A request that cancels loses only its own images (the call stops when every request in it cancelled). A failure
that belongs to one request (its prompt syntax, its progress callback, its safety screening) fails that request
only; a failed shared call is retried one request at a time, so its error reaches only the request that causes it.

Off by default: CPU kernels sum in another order at another batch size, so a batched image can differ from the
same request run alone by a level in a few pixels, and t2i promises the same bytes for the same request.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .fastpath import feature_cache
from .plugins import activated
from .previews import latents_to_preview, preview_method
from .progress import GenerationCancelled, ProgressCallback, ProgressEvent
from .prompts import encode_prompts
from .request import GenerationResult
from .samplers import make_scheduler

if TYPE_CHECKING:  # the engine builds its Batcher; importing it here at run time would be circular
    from .engine import Engine, PreparedRequest

POLL_S = 0.02  # how often a waiting request looks at its cancel event and tries the model lock


@dataclass(frozen=True)
class BatchKey:
    """What requests must share to run as one call."""

    model_id: int
    sampler: str
    steps: int
    cfg: float
    width: int
    height: int
    units: str  # adapter units as sorted JSON


def batch_key(prepared: PreparedRequest) -> BatchKey | None:
    """The key a request shares with those it can be batched with; None when it must run alone."""
    request = prepared.request
    if request.mode != "txt2img" or request.batch_count != 1:
        return None
    if any(plugin.kind != "adapter" for plugin, _ in prepared.used):
        return None  # a conditioner brings per-request images and may swap the pipeline
    try:
        units = json.dumps({plugin.name: units for plugin, units in prepared.used}, sort_keys=True)
    except TypeError:  # a unit value that is not plain data cannot be compared safely
        return None
    return BatchKey(id(prepared.model), request.sampler, request.steps, request.cfg, prepared.width,
                    prepared.height, units)


@dataclass(eq=False)
class Member:
    """One request waiting for, or running in, a shared call."""

    prepared: PreparedRequest
    key: BatchKey
    on_progress: ProgressCallback | None
    cancel: threading.Event
    enqueued: float = field(default_factory=time.monotonic)
    taken: bool = False  # a leader took it into a call (changed under the Batcher's condition)
    done: threading.Event = field(default_factory=threading.Event)
    embeds: dict | None = None
    result: GenerationResult | None = None
    error: Exception | None = None

    @property
    def image_count(self) -> int:
        return self.prepared.request.batch_size

    @property
    def live(self) -> bool:
        """Still wants its images: neither cancelled nor failed."""
        return self.error is None and not self.cancel.is_set()

    def fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error

    def outcome(self) -> GenerationResult:
        """The request's result, or its own error, or GenerationCancelled when its images were dropped."""
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise GenerationCancelled("generation cancelled")
        return self.result


class Batcher:
    """The queue of shareable requests of one engine; the thread that gets a model's lock runs its companions."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.max_images = engine.settings.batch_max
        self.window_s = engine.settings.batch_window_ms / 1000
        self._changed = threading.Condition()  # guards _waiting and every Member.taken
        self._waiting: list[Member] = []

    def accepts(self, prepared: PreparedRequest) -> bool:
        """Whether batching is on and this request could share a call with another."""
        return (self.max_images > 1 and prepared.request.batch_size < self.max_images
                and batch_key(prepared) is not None)

    def submit(self, prepared: PreparedRequest, on_progress: ProgressCallback | None = None,
               cancel: threading.Event | None = None) -> GenerationResult:
        """Queue a request, run it with any compatible companions, and return its own result."""
        member = Member(prepared, batch_key(prepared), on_progress, cancel or threading.Event())
        with self._changed:
            self._waiting.append(member)
            self._changed.notify_all()
            deadline = member.enqueued + self.window_s
            while (not member.taken and self._queued_images(member.key) < self.max_images
                   and (left := deadline - time.monotonic()) > 0):
                self._changed.wait(left)
        lock = prepared.model.lock
        while not member.taken:
            if member.cancel.is_set() and self._withdraw(member):
                raise GenerationCancelled("generation cancelled")
            if lock.acquire(timeout=POLL_S):
                try:
                    group = self._take(member)  # empty when another thread's call took this request meanwhile
                    if group:
                        run_members(self.engine, group)
                finally:
                    lock.release()
        while not member.done.wait(POLL_S):
            if member.cancel.is_set():  # the running call drops this request's images
                raise GenerationCancelled("generation cancelled")
        return member.outcome()

    def _queued_images(self, key: BatchKey) -> int:
        return sum(m.image_count for m in self._waiting if m.key == key)

    def _withdraw(self, member: Member) -> bool:
        with self._changed:
            if member.taken:
                return False
            self._waiting.remove(member)
            return True

    def _take(self, member: Member) -> list[Member]:
        """`member` and the compatible waiting requests after it in arrival order, up to the image limit."""
        with self._changed:
            if member.taken:
                return []
            group, images = [member], member.image_count
            for other in self._waiting:
                if (other is not member and other.key == member.key and not other.cancel.is_set()
                        and images + other.image_count <= self.max_images):
                    group.append(other)
                    images += other.image_count
            for taken in group:
                taken.taken = True
                self._waiting.remove(taken)
            self._changed.notify_all()
            return group


def run_members(engine: Engine, members: list[Member]) -> None:
    """Run taken requests (the model lock is held) in as few calls as their embedding shapes allow."""
    lead = members[0].prepared
    model = lead.model
    try:
        with torch.inference_mode(), activated(model, lead.adapters):  # every member has the same adapter units
            for member in members:  # after adapters touched the text encoder; a syntax error fails its own request
                try:
                    member.embeds = encode_prompts(model, member.prepared.styled.prompt,
                                                   member.prepared.styled.negative_prompt)
                except Exception as exc:
                    member.fail(exc)
            described = lead.described()
            for call in _calls_by_shape([m for m in members if m.live]):
                _run_call(engine, call, described)
    except Exception as exc:  # shared by all (e.g. an adapter failed to load): every request gets it
        for member in members:
            member.fail(exc)
    finally:
        for member in members:
            member.done.set()


def _calls_by_shape(members: list[Member]) -> list[list[Member]]:
    calls: dict[tuple, list[Member]] = {}
    for member in members:
        shapes = tuple(tuple(tensor.shape) for tensor in member.embeds.values())
        calls.setdefault(shapes, []).append(member)
    return list(calls.values())


def _run_call(engine: Engine, members: list[Member], described: dict) -> None:
    """One pipeline call for `members`; each live one gets its result, a failing one its error."""
    lead = members[0].prepared
    model, request = lead.model, lead.request
    pipe = model.pipeline_for("txt2img")
    pipe.scheduler = make_scheduler(request.sampler, model.scheduler_config)
    pipe.set_progress_bar_config(disable=True)
    # one row per image, in member order: what num_images_per_prompt would repeat, done per member
    embeds = {name: torch.cat([m.embeds[name].repeat_interleave(m.image_count, dim=0) for m in members])
              for name in members[0].embeds}
    seeds = [m.prepared.seeds(0) for m in members]
    try:
        with feature_cache(pipe.unet, model.cache["fast_path"].cache_interval):
            images = pipe(
                **embeds, num_inference_steps=request.steps, guidance_scale=request.cfg, width=lead.width,
                height=lead.height, generator=[torch.Generator("cpu").manual_seed(s) for own in seeds for s in own],
                callback_on_step_end=_step_callback(engine, members), output_type="pil",
            ).images
    except GenerationCancelled:  # every member cancelled
        return
    except Exception as exc:
        if len(members) == 1:
            members[0].fail(exc)
            return
        for member in members:
            if member.live:
                _run_call(engine, [member], described)
        return
    start = 0
    for member, own_seeds in zip(members, seeds):
        own_images = images[start:start + member.image_count]
        start += member.image_count
        if not member.live:
            continue
        try:
            member.result = GenerationResult(model=model.name, mode=request.mode,
                                             images=engine.finish_images(member.prepared, own_images, own_seeds,
                                                                         described))
        except Exception as exc:
            member.fail(exc)


def _step_callback(engine: Engine, members: list[Member]):
    """Per step: stop when no member wants its images; otherwise each watching member gets its own previews."""
    model = members[0].prepared.model
    every = max(1, engine.settings.preview_every)
    method = preview_method(model, engine.settings.preview_method)

    def callback(pipe, step, timestep, kwargs):
        if not any(m.live for m in members):
            raise GenerationCancelled("every request in the batch cancelled")
        done = step + 1
        watching = [m for m in members if m.live and m.on_progress is not None]
        previews = None
        if watching and done % every == 0 and done < pipe.num_timesteps:
            previews = latents_to_preview(model, kwargs["latents"], method)
        start = 0
        for member in members:
            own = previews[start:start + member.image_count] if previews else None
            start += member.image_count
            if member not in watching:
                continue
            try:
                shown = engine.screen_previews(own, member.prepared.audit_id) if own else None
                member.on_progress(ProgressEvent(done, pipe.num_timesteps, 1, 1, shown))
            except Exception as exc:  # e.g. its client went away: that request fails, the call goes on
                member.fail(exc)
        return kwargs

    return callback
