"""What clip skip, textual-inversion embeddings, VAE choice and hires fix add to a run, in one place, so the
run path (t2i/generation/run.py) only calls in at three points: encoding a member's prompts, around its pipeline
call, and after that call.

Requests with a VAE choice or hires fix run alone (t2i/generation/batching.py): their pipeline call decodes with
their own VAE, or is followed by their own second pass. Clip skip and embeddings change only a member's prompt
embeddings, so those requests batch like any other.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from t2i.generation import hires
from t2i.generation.inpaint_area import around_inpaint_call
from t2i.generation.prompts import encode_prompts
from t2i.generation.textual_inversion import describe as describe_embeddings
from t2i.generation.textual_inversion import expand_embeddings
from t2i.models.embedding_files import EmbeddingLibrary
from t2i.models.upscalers import UpscalerLibrary
from t2i.models.vae_choice import VaeLibrary, using_vae
from t2i.settings import Settings


@dataclass
class MemberExtras:
    """A member's VAE (None: the model's own) and hires plan (None: no second pass)."""

    vae: object = None
    hires: hires.HiresPlan | None = None


class RunExtras:
    """The libraries (embeddings, VAEs, upscalers) and the hooks the run path calls."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.embeddings = EmbeddingLibrary(settings)
        self.vaes = VaeLibrary(settings)
        self.upscalers = UpscalerLibrary(settings)

    def encode(self, model, request, prompt: str, negative_prompt: str) -> dict:
        """Prompt embeddings with the request's clip skip, embedding names expanded to their tokens."""
        prompt, negative_prompt = expand_embeddings(model, self.embeddings, prompt, negative_prompt)
        return encode_prompts(model, prompt, negative_prompt, request.clip_skip)

    def prepare(self, prepared, embeds: dict) -> tuple[MemberExtras, dict]:
        """A member's VAE and hires plan, and what they add to its recipe (VAE, TI hashes); errors are its own."""
        request, model = prepared.request, prepared.model
        extras = MemberExtras(vae=self.vaes.load(model, request.vae))
        texts = [prepared.styled.prompt, prepared.styled.negative_prompt]
        if request.hires_enabled:
            hires.check(model, request, self.upscalers)
            width, height = hires.target_size(request, prepared.width, prepared.height, self.settings)
            hires_embeds = embeds
            if request.hires_prompt or request.hires_negative_prompt:
                texts += [request.hires_prompt, request.hires_negative_prompt]
                hires_embeds = self.encode(model, request, request.hires_prompt or prepared.styled.prompt,
                                           request.hires_negative_prompt or prepared.styled.negative_prompt)
            extras.hires = hires.HiresPlan(width, height, hires_embeds)
        return extras, {**describe_embeddings(self.embeddings, *texts), **self.vaes.describe(request.vae)}

    def around_call(self, member):
        """The context of a member's pipeline call: its VAE swapped into every pipeline the call uses, and its
        inpainting's masked content (t2i/generation/inpaint_area.py)."""
        context = contextlib.ExitStack()
        context.enter_context(around_inpaint_call(member))
        if member.extras is None or member.extras.vae is None:
            return context
        model = member.prepared.model
        pipes = [member.pipe, model.pipeline] + ([model.pipeline_for("img2img")] if member.extras.hires else [])
        context.enter_context(using_vae(pipes, member.extras.vae))
        return context

    @staticmethod
    def first_output_type(member) -> str:
        return hires.first_output_type(member.prepared.request)

    def after_call(self, member, first, rows: dict, seeds: list[int], callback):
        """The call's images: its output as it is, or the hires second pass over it."""
        plan = member.extras.hires if member.extras is not None else None
        if plan is None:
            return first
        # only the prompt rows carry over: a conditioner's inputs (a control image) belong to the first pass
        rows = {name: rows[name] for name in member.embeds}
        if plan.embeds is not member.embeds:  # hires prompts: their own rows, one per image
            rows = {name: tensor.repeat_interleave(member.image_count, dim=0) for name, tensor in plan.embeds.items()}
        return hires.second_pass(member.prepared.model, member.prepared.request, first, plan, rows, seeds, callback,
                                 self.upscalers)
