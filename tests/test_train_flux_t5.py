"""Flux.1 training frees T5 once the run's prompts are encoded, and keeps one cache of T5's output, in CPU memory:
on a tiny Flux.1-dev pipeline the embeddings and a sample are the same bytes before and after T5 leaves, the weights
on the device shrink by T5's bytes, a prompt encoded too late says so, a run whose prompts cannot all be known (too
many orders of shuffled tags) keeps T5, every order shuffled tags can draw is among the prompts encoded ahead, the
trainer's embedding cache holds the family's T5 tensors, not copies, and a step on another device than the cache's
gets its batch's sequences there while the cache stays on the CPU.
(The trainer's own run: tests/test_train_flux.py checks its stage bytes, tests/test_train_samples.py its samples.)"""

from __future__ import annotations

import gc
import math
import weakref
from dataclasses import replace

import numpy as np
import pytest
import torch

from t2i.models.tiny import build_pipeline
from t2i.train.caption_tags import every_tag_order, shuffle_tags
from t2i.train.config import config_from_preset
from t2i.train.dataset import Dataset, DatasetItem
from t2i.train.family_training import training_for
from t2i.train.lora_trainer import MAX_TAG_ORDERS, _cached_bytes, run_prompts
from t2i.train.quantised_base import base_bytes, device_bytes
from t2i.train.training_data import TextEmbeddings

PROMPTS = ["tlq, a large red star", "a large red star"]


def test_t5_leaves_the_pipeline_and_embeddings_and_samples_stay_the_same():
    pipe = build_pipeline("flux1", "dev")
    pipe.set_progress_bar_config(disable=True)
    config = config_from_preset(name="t5", trigger="tlq")
    family = training_for("flux1")
    encoders = {"text_encoder": pipe.text_encoder}
    with torch.no_grad():
        before = family.encode_prompts(pipe, encoders, PROMPTS)
    sample = np.asarray(family.sample(pipe, PROMPTS[0], 0, (32, 32)))
    cpu = torch.device("cpu")
    loaded, t5_bytes = device_bytes(pipe, cpu), base_bytes(pipe.text_encoder_2)
    t5 = weakref.ref(pipe.text_encoder_2)

    assert family.release_frozen_encoders(pipe, None, config) == ()
    assert pipe.text_encoder_2 is not None  # prompts not all known ahead (shuffled tags): T5 must stay
    assert training_for("sd").release_frozen_encoders(pipe, PROMPTS, config) == ()
    assert family.release_frozen_encoders(pipe, [*PROMPTS, ""], config) == ("text_encoder_2",)
    print(f"tiny Flux.1-dev on the training device: {loaded} bytes, {device_bytes(pipe, cpu)} after T5 "
          f"({t5_bytes} bytes) left")
    assert pipe.text_encoder_2 is None and device_bytes(pipe, cpu) == loaded - t5_bytes
    gc.collect()
    assert t5() is None  # nothing else (the family's cache, the pipeline's config) kept it: its memory is free

    with torch.no_grad():
        after = family.encode_prompts(pipe, encoders, PROMPTS)
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert np.array_equal(np.asarray(family.sample(pipe, PROMPTS[0], 0, (32, 32))), sample)
    with pytest.raises(RuntimeError, match="T5 left the pipeline.*'a small blue circle' was not one of them"):
        family.encode_prompts(pipe, encoders, ["a small blue circle"])

    # one cache of T5's output: the trainer's embeddings (CLIP frozen) hold the family's tensors themselves
    cache = family.cached_embeddings(pipe)
    embeddings = TextEmbeddings(pipe, family, encoders, PROMPTS, trained=False)
    for prompt in [*PROMPTS, ""]:
        for key in ("prompt_embeds", "text_ids"):
            assert embeddings.cache[prompt][key].data_ptr() == cache[prompt][key].data_ptr()
    sequences = sum(cache[p]["prompt_embeds"].untyped_storage().nbytes() for p in cache)
    pooled = sum(embeddings.cache[p]["pooled"].untyped_storage().nbytes() for p in embeddings.cache)
    ids = sum(cache[p]["text_ids"].untyped_storage().nbytes() for p in cache)
    assert _cached_bytes(cpu, cache, embeddings.cache) == sequences + ids + pooled  # the sequences once
    # what the trainer counts on the device: the pooled embeddings, not the family's cache (kept in CPU memory)
    assert _cached_bytes(cpu, cache, embeddings.cache, besides=cache) == pooled


def test_a_step_on_another_device_brings_its_batch_sequences_there_and_the_cache_stays_on_the_cpu():
    """The `meta` device stands for the accelerator (the only second device here): a module there refuses CPU
    inputs, so the step's call fails unless the batch's sequences were brought to it."""
    pipe = build_pipeline("flux1", "dev")
    family = training_for("flux1")
    config = config_from_preset(name="t5", trigger="tlq")
    family.release_frozen_encoders(pipe, [*PROMPTS, ""], config)
    pipe.to("meta")
    embeddings = TextEmbeddings(pipe, family, {"text_encoder": pipe.text_encoder}, PROMPTS, trained=False)
    batch = embeddings([PROMPTS[0], "", PROMPTS[1]])
    assert batch["prompt_embeds"].device.type == "cpu" and batch["pooled"].device.type == "meta"
    latents = torch.zeros(3, pipe.transformer.config.in_channels // 4, 8, 8, device="meta")
    noisy = family.noisy_batch(pipe, family.training_scheduler(pipe), latents, torch.Generator().manual_seed(0),
                               config)
    prediction = family.predict(pipe.transformer, pipe, noisy, batch, {})
    assert prediction.device.type == "meta" and prediction.shape == latents.shape
    cache = family.cached_embeddings(pipe)
    assert {tensor.device.type for tensors in cache.values() for tensor in tensors.values()} == {"cpu"}


def test_the_prompts_encoded_ahead_cover_every_order_shuffled_tags_can_draw(tmp_path):
    from PIL import Image

    image = Image.new("RGB", (64, 64))
    captions = ["a large red star, bold, on teal", "a small circle, outlined"]
    dataset = Dataset([DatasetItem(f"{i}.png", image, caption) for i, caption in enumerate(captions)])
    config = config_from_preset(name="t5", trigger="tlq", shuffle_tags=True, keep_tokens=1,
                                sample_prompts=("tlq, a dot",), prior_preservation=False)
    prompts = run_prompts(dataset, config, list(config.sample_prompts))
    generator = torch.Generator().manual_seed(0)
    drawn = {shuffle_tags(f"tlq, {caption}", 1, generator) for caption in captions for _ in range(100)}
    assert drawn <= set(prompts) and len(drawn) == 3 * 2 + 2 * 1  # 3! orders of one, 2! of the other
    assert {"", "tlq, a dot"} <= set(prompts)
    assert run_prompts(dataset, replace(config, shuffle_tags=False), ["x"]) == [
        "tlq, a large red star, bold, on teal", "tlq, a small circle, outlined", "", "x"]
    many = Dataset([DatasetItem("0.png", image, ", ".join(f"tag{i}" for i in range(8)))])
    assert math.factorial(7) > MAX_TAG_ORDERS and run_prompts(many, config, []) is None
    assert every_tag_order("tlq, a, b", 1, MAX_TAG_ORDERS) == ["tlq, a, b", "tlq, b, a"]

