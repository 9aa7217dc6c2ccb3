"""LoRAs in the A1111 parameters text: `<lora:name:weight>` tags in the prompt line, as A1111 writes them (issue 23)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import sd_parsers
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

from lora_helpers import UNET_TARGETS, random_lora_weights
from t2i.generation.engine import Engine
from t2i.recipes.infotext import infotext, png_bytes
from t2i.recipes.pnginfo import parse_infotext
from t2i.request import GenerationRequest
from t2i.settings import EMBEDDED_MODEL_DIR

TAG = re.compile(r"<lora:([^:<>]+):([^:<>]+)>")


@pytest.fixture(scope="module")
def lora_engine(settings, tmp_path_factory):
    """An engine whose library holds two untrained LoRAs ('ink', 'dots') that visibly change the embedded model."""
    folder = tmp_path_factory.mktemp("loras")
    for name, seed in (("ink", 0), ("dots", 1)):
        unet = UNet2DConditionModel.from_pretrained(EMBEDDED_MODEL_DIR, subfolder="unet")  # a scratch copy
        torch.manual_seed(seed)
        save_file(random_lora_weights(unet, "unet", UNET_TARGETS), folder / f"{name}.safetensors")
    return Engine(dataclasses.replace(settings, lora_dir=folder))


def _made(engine, prompt="a red star on a blue background", loras=()):
    units = {"lora": [{"name": name, "weight": weight} for name, weight in loras]} if loras else {}
    return engine.generate(GenerationRequest(prompt=prompt, seed=11, steps=3, plugin_units=units)).images[0]


def test_weights_1_and_2_give_different_text_that_sd_parsers_reads(lora_engine, tmp_path):
    read = {}
    for weight in (1, 2):
        image = _made(lora_engine, loras=[("ink", weight)])
        path = tmp_path / f"w{weight}.png"
        path.write_bytes(png_bytes(image.image, image.parameters))
        info = sd_parsers.ParserManager().parse(str(path))
        assert info.generator.name == "AUTOMATIC1111"
        # (sd_parsers skips quoted values holding a colon, so `Lora hashes` is checked with our own reader)
        text = infotext(image.parameters)
        read[weight] = (TAG.findall(info.full_prompt), parse_infotext(text).extra["Lora hashes"], text)
    assert read[1][0] == [("ink", "1.0")] and read[2][0] == [("ink", "2.0")]
    ink = lora_engine.plugins.plugins["lora"].library.resolve("ink")
    assert read[1][1] == read[2][1] == f"ink: {ink.short_hash}"
    assert read[1][2] != read[2][2]
    assert read[1][2].splitlines()[0] == "a red star on a blue background <lora:ink:1.0>"


def test_replaying_the_text_applies_the_same_loras_once(lora_engine):
    """Tags written in the prompt and LoRA rows both reach the text; replaying it parses each LoRA exactly once."""
    original = _made(lora_engine, prompt="a red star <lora:ink:0.5> on a blue background", loras=[("dots", -1.5)])
    text = infotext(original.parameters)
    assert text.splitlines()[0] == "a red star on a blue background <lora:dots:-1.5> <lora:ink:0.5>"
    read = parse_infotext(text)
    assert read.form["prompt"] == text.splitlines()[0]
    replayed = lora_engine.generate(GenerationRequest(**read.form)).images[0]  # no rows: the tags are the LoRAs
    assert infotext(replayed.parameters) == text
    assert np.array_equal(np.asarray(replayed.image), np.asarray(original.image))
    plain = _made(lora_engine, prompt="a red star on a blue background")
    assert np.abs(np.asarray(plain.image, float) - np.asarray(original.image, float)).mean() > 1  # the LoRAs acted
    assert TAG.search(infotext(plain.parameters)) is None
