"""Clip skip: 2 conditions SD models on the text encoder's penultimate layer (normalized, as A1111 and compel's
PENULTIMATE_HIDDEN_STATES_NORMALIZED do), changes the image, and is recorded; SDXL already uses that layer."""

import numpy as np
import pytest
import torch

from t2i.generation.prompts import encode_prompts
from t2i.recipes.infotext import infotext
from t2i.request import GenerationRequest, RequestError

PROMPT = "a large red circle in the center on a blue background"


def test_clip_skip_2_is_the_penultimate_layer_through_the_final_norm(engine):
    model = engine.models.get("embedded")
    encoder, tokenizer = model.pipeline.text_encoder, model.pipeline.tokenizer
    with torch.inference_mode():
        last = encode_prompts(model, PROMPT, "", clip_skip=1)["prompt_embeds"]
        skipped = encode_prompts(model, PROMPT, "", clip_skip=2)["prompt_embeds"]
        ids = tokenizer(PROMPT, padding="max_length", max_length=tokenizer.model_max_length,
                        return_tensors="pt").input_ids
        hidden = encoder(ids, output_hidden_states=True).hidden_states
        expected = encoder.final_layer_norm(hidden[-2])
        assert torch.allclose(last, encoder.final_layer_norm(hidden[-1]), atol=1e-6)
    assert torch.allclose(skipped, expected, atol=1e-6)
    assert (skipped - last).abs().max() > 0.5  # a different layer, not a rounding difference
    with torch.inference_mode():  # weighting works on the penultimate layer too
        weighted = encode_prompts(model, "a large (red:1.4) circle", "", clip_skip=2)["prompt_embeds"]
        plain = encode_prompts(model, "a large red circle", "", clip_skip=2)["prompt_embeds"]
    assert not torch.equal(weighted, plain)


def test_clip_skip_changes_the_image_and_is_recorded(engine):
    one = engine.generate(GenerationRequest(prompt=PROMPT, steps=6, seed=5)).images[0]
    two = engine.generate(GenerationRequest(prompt=PROMPT, steps=6, seed=5, clip_skip=2)).images[0]
    difference = np.abs(np.asarray(one.image, np.int16) - np.asarray(two.image, np.int16)).mean()
    assert difference > 2, difference
    assert two.parameters["clip_skip"] == 2 and "Clip skip: 2" in infotext(two.parameters)
    assert "Clip skip" not in infotext(one.parameters)


def test_clip_skip_beyond_the_penultimate_layer_is_refused(settings):
    with pytest.raises(RequestError, match="clip_skip must be 1 .* or 2"):
        GenerationRequest(prompt="x", clip_skip=3).validate(settings)


@pytest.mark.slow
def test_sdxl_already_uses_the_penultimate_layer(engine, tiny_sdxl_dir):
    model = engine.models.get(str(tiny_sdxl_dir))
    with torch.inference_mode():
        one = encode_prompts(model, PROMPT, "", clip_skip=1)
        two = encode_prompts(model, PROMPT, "", clip_skip=2)
    assert all(torch.equal(one[name], two[name]) for name in one)
