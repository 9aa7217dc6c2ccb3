"""Flux.1 training frees T5 once the run's prompts are encoded: on a tiny Flux.1-dev pipeline the embeddings and a
sample are the same bytes before and after T5 leaves, the weights on the device shrink by T5's bytes, a prompt
encoded too late says so, and shuffled tags (new prompts as the run goes) keep T5.
(The trainer's own run: tests/test_train_samples.py checks its start event and its samples.)"""

from __future__ import annotations

import gc
import weakref
from dataclasses import replace

import numpy as np
import pytest
import torch

from t2i.models.tiny import build_pipeline
from t2i.train.config import config_from_preset
from t2i.train.family_training import training_for
from t2i.train.quantised_base import base_bytes, device_bytes

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

    assert family.release_frozen_encoders(pipe, PROMPTS, replace(config, shuffle_tags=True)) == ()
    assert pipe.text_encoder_2 is not None  # a shuffled caption is a new prompt: T5 must stay
    assert training_for("sd").release_frozen_encoders(pipe, PROMPTS, config) == ()
    assert family.release_frozen_encoders(pipe, PROMPTS, config) == ("text_encoder_2",)
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
