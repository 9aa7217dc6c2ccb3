"""Prompt weighting: A1111 or compel syntax in, weighted embeddings out, long prompts chunked not cut."""

from __future__ import annotations

from compel import CompelForSD, CompelForSDXL

from t2i.models.cache import LoadedModel
from t2i.generation.prompt_syntax import PromptSyntaxError, to_compel
from t2i.request import RequestError


def encode_prompts(model: LoadedModel, prompt: str, negative_prompt: str) -> dict:
    """Pipeline keyword arguments (prompt_embeds, negative_prompt_embeds, pooled for SDXL) for two prompts."""
    try:
        positive, negative = to_compel(prompt), to_compel(negative_prompt)
    except PromptSyntaxError as exc:
        raise RequestError(f"prompt syntax: {exc}") from exc
    if "compel" not in model.cache:
        wrapper = CompelForSDXL if model.family == "sdxl" else CompelForSD
        model.cache["compel"] = wrapper(model.pipeline)
    compel = model.cache["compel"]
    if model.family == "sdxl":
        out = compel(main_prompt=positive, negative_prompt=negative)
        return {"prompt_embeds": out.embeds, "negative_prompt_embeds": out.negative_embeds,
                "pooled_prompt_embeds": out.pooled_embeds, "negative_pooled_prompt_embeds": out.negative_pooled_embeds}
    out = compel(positive, negative)
    return {"prompt_embeds": out.embeds, "negative_prompt_embeds": out.negative_embeds}
