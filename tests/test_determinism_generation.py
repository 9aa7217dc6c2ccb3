"""Same request and seed, same bytes, wherever diffusers draws its randomness: image k of a batch is the image its
seed makes alone, for pipelines that draw noise from torch's global RNG (the SD3 ControlNet pipeline) and for
samplers with their own noise source (DPM++ SDE's Brownian tree)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from t2i.generation.engine import Engine
from t2i.models.tiny import save_tiny_model
from t2i.models.tiny.controlnets import save_tiny_controlnet
from t2i.recipes.infotext import png_bytes
from t2i.request import GenerationRequest
from t2i.settings import Settings

SIZE = 64


@pytest.fixture(scope="module")
def sd3(tmp_path_factory) -> tuple[Engine, Path]:
    """An engine with a tiny SD3 ControlNet in its library, and a tiny SD3 model folder."""
    root = tmp_path_factory.mktemp("determinism-sd3")
    save_tiny_controlnet("sd3", root / "library" / "tiny-sd3", seed=2)
    engine = Engine(Settings(data_dir=root / "data", device="cpu", dtype="float32", default_model="embedded",
                             entry_point_plugins=False, safety_allow_unchecked_images=True,
                             controlnet_dirs=(root / "library",)))
    return engine, save_tiny_model("sd3", root / "sd3")


def _control_image() -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), "white")
    ImageDraw.Draw(image).rectangle((8, 8, 40, 40), fill="black")
    return image


@pytest.mark.slow  # building the tiny SD3 model and ControlNet takes about 6 s on 2 loaded cores
def test_each_image_of_an_sd3_controlnet_batch_is_the_image_its_seed_makes_alone(sd3):
    engine, model = sd3

    def images(seed: int, batch_size: int) -> list[bytes]:
        unit = {"image": _control_image(), "preprocessor": "none", "model": "tiny-sd3"}
        request = GenerationRequest(prompt="a red circle", seed=seed, steps=2, width=SIZE, height=SIZE,
                                    model=str(model), batch_size=batch_size, plugin_units={"controlnet": [unit]})
        return [item.image.tobytes() for item in engine.generate(request).images]

    batch = images(5, 2)
    # the pipeline samples the control image's VAE latents from torch's global RNG: one call for both images drew
    # that noise from the first seed, so the second image differed from its seed's image alone
    assert batch == images(5, 1) + images(6, 1)
    assert batch[0] != batch[1]


def _pixels(item) -> np.ndarray:
    return np.asarray(item.image, dtype=np.int16)


def test_dpm_sde_images_follow_their_own_seed_not_their_batch(engine):
    def images(seed: int, batch_size: int):
        request = GenerationRequest(prompt="a red circle in the top left on a blue background", seed=seed, steps=4,
                                    batch_size=batch_size, sampler="DPM++ SDE Karras")
        return engine.generate(request).images

    batch = images(3, 2)
    alone = images(4, 1)[0]
    # the Brownian tree's seed came from torch's global RNG (seeded from the call's first seed), one tree for the
    # whole batch: the second image was 48 levels off its seed's image alone (measured on the embedded model; 0 now)
    assert np.abs(_pixels(batch[1]) - _pixels(alone)).max() <= 2  # the batching promise (tests/test_batching.py)
    torch.manual_seed(12345)  # the same request again gives the same bytes, whatever used torch's global RNG before
    torch.rand(7)
    again = images(4, 1)[0]
    assert png_bytes(again.image, again.parameters) == png_bytes(alone.image, alone.parameters)
