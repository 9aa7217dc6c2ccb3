"""The one run path: requests run as members of a group, and a request on its own is a group of one.

A group shares its model, sampler, steps, CFG, size, mode, strength and plugin units apart from their images
(t2i/generation/batching.py decides who may join). Each batch of a group is one pipeline call: prompt embeddings one row
per image (what `num_images_per_prompt` would repeat, done per member), one CPU generator per image so every
image keeps its seed's noise, and each input the members share passed once while inputs that differ (init
images, masks, control maps) are passed one per image. A conditioner's extra arguments must therefore be images,
or values its units' other parameters and the size decide. Each member gets its own previews, mask compositing,
recipe and safety screening.

A member that cancels loses only its own images (the call stops when no member wants its images). A failure
that belongs to one member (its prompt syntax, its conditioner, its progress callback, its safety screening)
fails that member only; a failed shared call is retried one member at a time, so its error reaches only the
member that causes it.

A pipeline that draws noise from torch's global RNG instead of the generators (GLOBAL_RNG_PIPELINES) cannot give
each image of one call its own seed's noise, so its members run alone and each of their images in a call of its
own, with the global RNG seeded from that image's seed: image k of a batch is then the image its seed makes alone.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from t2i.generation.fastpath import feature_cache
from t2i.plugins import activated
from t2i.generation.previews import latents_to_preview, preview_method
from t2i.generation.progress import GenerationCancelled, ProgressCallback, ProgressEvent
from t2i.generation.run_extras import RunExtras
from t2i.request import MAX_SEED, GeneratedImage, GenerationResult
from t2i.safety.gate import SafetyGate
from t2i.generation.samplers import make_scheduler, seed_noise
from t2i.settings import Settings
from t2i.generation.prepared import PreparedRequest

# diffusers 0.42.1's SD3 ControlNet pipelines sample the control image's VAE latents with `latent_dist.sample()`, from
# torch's global RNG, in one draw for every image of the call (the generators are not passed)
GLOBAL_RNG_PIPELINES = frozenset({"StableDiffusion3ControlNetPipeline", "StableDiffusion3ControlNetInpaintingPipeline"})


@dataclass(eq=False)
class Member:
    """One request of a group: what it asked for, and what it gets back."""

    prepared: PreparedRequest
    on_progress: ProgressCallback | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    pipe: Any = None  # its mode's pipeline, or the one its conditioners swapped in
    inputs: dict = field(default_factory=dict)  # init image, strength, mask and conditioner arguments
    embeds: dict | None = None
    extras: Any = None  # its VAE choice and hires plan (t2i/generation/run_extras.py)
    described: dict = field(default_factory=dict)
    images: list[GeneratedImage] = field(default_factory=list)
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


class Runner:
    """Runs groups of prepared requests on their model and screens what they show and return."""

    def __init__(self, settings: Settings, safety: SafetyGate):
        self.settings = settings
        self.safety = safety
        self.extras = RunExtras(settings)  # clip skip, embeddings, VAE choice, hires fix

    def run(self, members: list[Member]) -> None:
        """Run a group (its model's lock is held); each member ends with its result or its own error."""
        lead = members[0].prepared
        try:
            with torch.inference_mode(), activated(lead.model, lead.adapters):  # members share adapter units
                # 1. each member's pipeline, inputs and weighted prompt embeddings (after adapters touched the
                #    text encoder); a failure here, such as a prompt syntax error, is that member's own
                for member in members:
                    try:
                        self._prepare(member)
                    except Exception as exc:
                        member.fail(exc)
                # 2. denoise, decode and finish: one call per batch for members whose embeddings have one shape
                for call in _calls_by_shape([m for m in members if m.live]):
                    for batch in range(call[0].prepared.request.batch_count):
                        if _draws_global_rng(call[0]):
                            self._run_images_apart(call[0], batch)
                        else:
                            self._run_call(call, batch)
            # 3. every member that still wants its images gets them all, or nothing
            for member in members:
                if member.live:
                    member.result = GenerationResult(model=lead.model.name, mode=member.prepared.request.mode,
                                                     images=member.images)
        except Exception as exc:  # shared by all (e.g. an adapter failed to load): every member gets it
            for member in members:
                member.fail(exc)
        finally:
            for member in members:
                member.done.set()

    def _prepare(self, member: Member) -> None:
        prepared = member.prepared
        model, mode = prepared.model, prepared.request.mode
        member.pipe, member.inputs = model.pipeline_for(mode), prepared.mode_inputs()
        for plugin, units in prepared.conditioners:  # a conditioner may swap in its own pipeline
            member.pipe, kwargs = plugin.prepare(model, member.pipe, mode, units, prepared.width, prepared.height)
            member.inputs.update(kwargs)
        member.pipe.scheduler = make_scheduler(prepared.request.sampler, model.scheduler_config, model.family_spec)
        member.pipe.set_progress_bar_config(disable=True)
        member.embeds = self.extras.encode(model, prepared.request, prepared.styled.prompt,
                                           prepared.styled.negative_prompt)
        member.extras, described = self.extras.prepare(prepared, member.embeds)
        member.described = {**prepared.described(), **described}

    def _run_images_apart(self, member: Member, batch: int) -> None:
        """Each image of `member`'s batch in a call of its own, as the request of that one image and seed; progress
        counts over the whole batch (image k's step s is step k * steps + s of n_images * steps), as one call's does."""
        seeds = member.prepared.seeds(batch)
        for index, seed in enumerate(seeds):
            if not member.live:
                return
            # a view of the member with one image whose seed in this batch is `seed`; it shares the member's image
            # list, cancel event and progress callback, and its error is the member's
            prepared = dataclasses.replace(member.prepared, request=dataclasses.replace(
                member.prepared.request, batch_size=1), base_seed=(seed - batch) % (MAX_SEED + 1))
            alone = dataclasses.replace(member, prepared=prepared)
            self._run_call([alone], batch, part=(index, len(seeds)))
            if alone.error is not None:
                member.fail(alone.error)

    def _run_call(self, members: list[Member], batch: int, part: tuple[int, int] = (0, 1)) -> None:
        """One pipeline call for the live `members`; each gets its images, a failing one its error. `part`: this
        call's place among the calls that make one batch (index, count), for progress."""
        members = [m for m in members if m.live]
        if not members:
            return
        lead = members[0].prepared
        seeds = [m.prepared.seeds(batch) for m in members]
        try:
            # the feature cache acts on UNets only (a transformer's fast path has interval 1)
            rows = _rows(members)
            with feature_cache(getattr(members[0].pipe, "unet", None), lead.model.cache["fast_path"].cache_interval), \
                    self.extras.around_call(members[0]), torch.random.fork_rng():
                # (around_call: a VAE choice or hires fix, a member that runs alone.) torch's global RNG is seeded
                # from the call's first seed and restored after: a GLOBAL_RNG_PIPELINES call holds one image, so
                # that is its own seed
                torch.manual_seed(seeds[0][0])
                seed_noise(members[0].pipe.scheduler, [s for own in seeds for s in own])
                images = members[0].pipe(
                    **rows, **lead.guidance(), num_inference_steps=lead.request.steps,
                    width=lead.width, height=lead.height,
                    generator=[torch.Generator("cpu").manual_seed(s) for own in seeds for s in own],
                    callback_on_step_end=self._step_callback(members, batch, part),
                    output_type=self.extras.first_output_type(members[0]),
                ).images
                images = self.extras.after_call(members[0], images, rows, seeds[0],
                                                self._step_callback(members, batch, part))
        except GenerationCancelled:  # no member wants its images any more
            return
        except Exception as exc:
            if len(members) == 1:
                members[0].fail(exc)
                return
            for member in members:
                self._run_call([member], batch)
            return
        start = 0
        for member, own_seeds in zip(members, seeds):
            own_images = images[start:start + member.image_count]
            start += member.image_count
            if not member.live:
                continue
            if "mask_image" in member.inputs:  # keep unmasked pixels exactly (the VAE round trip shifts them)
                own_images = [Image.composite(image, member.inputs["image"], member.inputs["mask_image"])
                              for image in own_images]
            try:
                member.images.extend(self.finish_images(member.prepared, own_images, own_seeds, member.described))
            except Exception as exc:
                member.fail(exc)

    def _step_callback(self, members: list[Member], batch: int, part: tuple[int, int] = (0, 1)):
        """Per step: stop when no member wants its images; otherwise each watching member gets its own previews, and
        the step counted over the `part` (index, count) calls of its batch."""
        index, count = part
        model = members[0].prepared.model
        every = max(1, self.settings.preview_every)
        method = preview_method(model, self.settings.preview_method)

        def callback(pipe, step, timestep, kwargs):
            if not any(m.live for m in members):
                raise GenerationCancelled("generation cancelled")
            done = step + 1
            watching = [m for m in members if m.live and m.on_progress is not None]
            previews = None
            if watching and done % every == 0 and done < pipe.num_timesteps:
                previews = latents_to_preview(model, kwargs["latents"], method, members[0].prepared.width,
                                              members[0].prepared.height)
            start = 0
            for member in members:
                own = previews[start:start + member.image_count] if previews else None
                start += member.image_count
                if member not in watching:
                    continue
                try:
                    shown = self.screen_previews(own, member.prepared.audit_id) if own else None
                    member.on_progress(ProgressEvent(index * pipe.num_timesteps + done, count * pipe.num_timesteps,
                                                     batch + 1, member.prepared.request.batch_count, shown))
                except Exception as exc:  # e.g. its client went away: that member fails, the call goes on
                    member.fail(exc)
            if all(m.error is not None for m in members):  # a failure is final: no need to finish the step
                raise GenerationCancelled("every request in the call failed")
            return kwargs

        return callback

    def finish_images(self, prepared: PreparedRequest, images: list[Image.Image], seeds: list[int],
                      described: dict) -> list[GeneratedImage]:
        """Each image screened by the safety gate, with the recipe that remakes it."""
        finished = []
        for image, seed in zip(images, seeds):
            screened = self.safety.screen_image(image, "image", request_id=prepared.audit_id)
            finished.append(GeneratedImage(image=screened.image, seed=seed, parameters=prepared.parameters(
                seed, described), notice=screened.notice))
        return finished

    def screen_previews(self, previews: list[Image.Image], audit_id: str) -> list[Image.Image | None]:
        """Live previews as shown: one that would be flagged is not shown, None in its place."""
        return [None if self.safety.screen_image(p, "preview", request_id=audit_id).flagged else p for p in previews]


def _draws_global_rng(member: Member) -> bool:
    return type(member.pipe).__name__ in GLOBAL_RNG_PIPELINES


def _calls_by_shape(members: list[Member]) -> list[list[Member]]:
    calls: dict[tuple, list[Member]] = {}
    for member in members:  # texts for the pipeline's own encoder (lists) go together; it pads them itself
        shapes = tuple((name, tuple(value.shape) if isinstance(value, torch.Tensor) else "text")
                       for name, value in member.embeds.items())
        if _draws_global_rng(member):  # alone (see the module's docstring)
            shapes = (id(member),)
        calls.setdefault(shapes, []).append(member)
    return list(calls.values())


def _rows(members: list[Member]) -> dict:
    """The call's arguments: embeddings (or texts) one row per image, and each input once when shared, else one per
    image."""
    rows = {name: torch.cat([m.embeds[name].repeat_interleave(m.image_count, dim=0) for m in members])
            if isinstance(members[0].embeds[name], torch.Tensor)
            else [text for m in members for text in m.embeds[name] for _ in range(m.image_count)]
            for name in members[0].embeds}
    for name in members[0].inputs:
        rows[name] = _merged([m.inputs[name] for m in members], [m.image_count for m in members], name)
    return rows


def _merged(values: list, counts: list[int], name: str):
    """One input for the call from each member's own: itself when all are equal, else one per image."""
    first = values[0]
    if all(value == first for value in values[1:]):
        return first
    if isinstance(first, Image.Image):
        return [value for value, count in zip(values, counts) for _ in range(count)]
    if isinstance(first, list) and all(isinstance(v, list) and len(v) == len(first) for v in values):
        return [_merged(list(column), counts, name) for column in zip(*values)]  # e.g. one per ControlNet
    raise ValueError(f"requests grouped into one call differ in {name!r}, which cannot be passed per image")
