"""Clip skip (A1111's `Clip skip: 2`): condition on the text encoder's penultimate layer, through compel.

- SD 1.x/2.x: clip skip 1 is compel's LAST_HIDDEN_STATES_NORMALIZED (what the pipelines use); clip skip 2 is its
  PENULTIMATE_HIDDEN_STATES_NORMALIZED: the penultimate layer's output through the final layer norm, as A1111 does.
- SDXL already conditions on the penultimate layer of both encoders (PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED, as
  A1111, ComfyUI and diffusers do by default), so clip skip 2 is what it always does and 1 is the same.
- Other families have no CLIP-skip notion here: clip skip 2 is refused there.

compel reads the final layer norm as `text_encoder.text_model.final_layer_norm`; transformers 5's CLIPTextModel
*is* the text transformer (no `text_model` attribute), so the one affected method is given the module it means.
"""

from __future__ import annotations

from compel import Compel, CompelForSD, ReturnedEmbeddingsType
from compel.embeddings_provider import EmbeddingsProvider

from t2i.request import RequestError

CLIP_SKIP_FAMILIES = ("sd", "sdxl")


class _PenultimateNormalized(EmbeddingsProvider):
    """compel's embeddings provider, with the final layer norm found on transformers 5's CLIPTextModel too."""

    def _encode_token_ids_to_embeddings(self, token_ids, attention_mask=None):
        if self.returned_embeddings_type != ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NORMALIZED:
            return super()._encode_token_ids_to_embeddings(token_ids, attention_mask)
        output = self.text_encoder(token_ids, attention_mask, output_hidden_states=True, return_dict=True)
        transformer = getattr(self.text_encoder, "text_model", self.text_encoder)
        return transformer.final_layer_norm(output.hidden_states[-2])


def clip_skip_compel(model, clip_skip: int) -> CompelForSD | None:
    """The compel wrapper that conditions `model` with `clip_skip`, or None where the family's usual one does
    (clip skip 1, or any SDXL); RequestError for clip skip 2 on a family without CLIP text encoders."""
    if clip_skip == 1 or model.family == "sdxl":
        return None
    if model.family not in CLIP_SKIP_FAMILIES:
        raise RequestError(f"clip skip applies to SD 1.x/2.x and SDXL models (CLIP text encoders); {model.name} is "
                           f"a {model.family} model: leave clip skip at 1")
    key = f"compel_clip_skip_{clip_skip}"
    if key not in model.cache:
        model.cache[key] = penultimate_compel(model.pipeline)
    return model.cache[key]


def penultimate_compel(pipe) -> CompelForSD:
    """compel for SD 1.x/2.x conditioning on the penultimate layer, normalized (clip skip 2)."""
    wrapper = CompelForSD(pipe)
    wrapper.compel = Compel(tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, truncate_long_prompts=False,
                            returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NORMALIZED)
    wrapper.compel.conditioning_provider.__class__ = _PenultimateNormalized  # same state, the one method fixed
    return wrapper
