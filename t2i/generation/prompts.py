"""Prompts to pipeline arguments, as the model's family encodes them; long prompts are never silently cut.

- SD 1.x/2.x and SDXL: compel, with A1111 or compel weighting; long prompts are chunked, not cut.
- Flux.1: compel's Flux wrapper (CLIP pooled + T5), with weighting; a prompt over the T5 limit is refused.
- the other families (SD3, Flux.2, Z-Image, Qwen-Image, Chroma): the pipeline's own encoder gets the plain text.
  Weighting syntax has no measured meaning there, so a prompt that uses it is refused, as is one over the
  family's token limit (those pipelines would cut it).
"""

from __future__ import annotations

from compel import CompelForFlux, CompelForSD, CompelForSDXL

from t2i.models.cache import LoadedModel
from t2i.generation.clip_skip import clip_skip_compel
from t2i.generation.prompt_syntax import PromptSyntaxError, plain_text, to_compel, uses_weighting
from t2i.request import RequestError

COMPEL_WRAPPERS = {"compel-sd": CompelForSD, "compel-sdxl": CompelForSDXL, "compel-flux": CompelForFlux}


def encode_prompts(model: LoadedModel, prompt: str, negative_prompt: str, clip_skip: int = 1) -> dict:
    """Pipeline keyword arguments for a prompt and a negative prompt: embeddings (one row each) where t2i encodes
    them, else one-item lists of plain text for the pipeline's own encoder."""
    family = model.family_spec
    if negative_prompt and not family.negative_prompt:
        raise RequestError(f"{family.label} models take no negative prompt; leave it empty")
    try:
        positive, negative = to_compel(prompt), to_compel(negative_prompt)
    except PromptSyntaxError as exc:
        raise RequestError(f"prompt syntax: {exc}") from exc
    skip_compel = clip_skip_compel(model, clip_skip)  # None: the family's usual compel
    if family.prompt_encoding == "pipeline":
        return _plain_prompts(model, prompt, negative_prompt)
    if "compel" not in model.cache:
        model.cache["compel"] = COMPEL_WRAPPERS[family.prompt_encoding](model.pipeline)
    compel = skip_compel or model.cache["compel"]
    if family.prompt_encoding == "compel-flux":
        for text in (prompt, negative_prompt):
            _check_token_limit(model, plain_text(text))
        out = compel(main_prompt=positive, negative_prompt=negative or None)
        embeds = {"prompt_embeds": out.embeds, "pooled_prompt_embeds": out.pooled_embeds}
        if negative_prompt:  # Flux uses a negative prompt only with true CFG (cfg above 1)
            embeds.update(negative_prompt_embeds=out.negative_embeds,
                          negative_pooled_prompt_embeds=out.negative_pooled_embeds)
        return embeds
    if family.prompt_encoding == "compel-sdxl":
        out = compel(main_prompt=positive, negative_prompt=negative)
        return {"prompt_embeds": out.embeds, "negative_prompt_embeds": out.negative_embeds,
                "pooled_prompt_embeds": out.pooled_embeds, "negative_pooled_prompt_embeds": out.negative_pooled_embeds}
    out = compel(positive, negative)
    return {"prompt_embeds": out.embeds, "negative_prompt_embeds": out.negative_embeds}


def _plain_prompts(model: LoadedModel, prompt: str, negative_prompt: str) -> dict:
    """The texts for a family whose pipeline encodes them itself, after the weighting and length checks."""
    family = model.family_spec
    texts = {"prompt": prompt, "negative_prompt": negative_prompt} if family.negative_prompt else {"prompt": prompt}
    for name, text in texts.items():
        if uses_weighting(text):
            raise RequestError(f"{family.label} models do not support prompt weighting; the {name.replace('_', ' ')}"
                               " uses it: remove the weights, or escape literal brackets as \\( \\)")
        texts[name] = plain_text(text)
        _check_token_limit(model, texts[name])
    return {name: [text] for name, text in texts.items()}


def _check_token_limit(model: LoadedModel, text: str) -> None:
    """Raise RequestError when `text` has more tokens than the family's encoder takes."""
    family = model.family_spec
    tokenizer = getattr(model.pipeline, family.tokenizer, None)
    if tokenizer is None or not text:
        return
    limit = family.prompt_tokens
    if family.prompt_encoding != "pipeline":  # compel cuts at the tokenizer's own length, end token included
        limit = min(limit, tokenizer.model_max_length - 1)
    count = len(tokenizer(text, add_special_tokens=False).input_ids)
    if count > limit:
        raise RequestError(f"the prompt is {count} tokens long; {family.label} models read at most {limit} "
                           "and would cut the rest: shorten it")
