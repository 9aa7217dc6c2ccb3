"""Issue 30 item 5's effect test: a texture style trains on the embedded model with the preset a beginner gets.

Twelve renders of shapes with 8 px stripes (a pattern the embedded VAE carries; bench/results/texture_vae.json),
captioned as a person would ("a large red star at the top left", no style word), train once with the default
preset and the trigger "zqx" in the trainer's own process. The stripes are read by t2i/eval/texture.py (validated on
renders in tests/test_texture_measure.py) on 10 held-out prompts, with and without the trigger.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from diffusers import StableDiffusionPipeline

from t2i.embedded.world import (ALL_COLOURS, COLOURS, DEFAULT_POSITION, IMAGE_SIZE, POSITIONS, SHAPES, SIZES,
                                 position_centre)
from t2i.eval.texture import paint_textured, read_texture
from t2i.settings import EMBEDDED_MODEL_DIR
from t2i.train.config import DEFAULT_PRESET, config_from_preset
from t2i.train.dataset import prepare_dataset

pytestmark = pytest.mark.slow  # a full training run (minutes)

PERIOD = 8  # px at 64x64: two latent pixels
OBJECT_COLOURS = [c for c in COLOURS if c != "white"]
PLAIN_SHAPES = [s for s in SHAPES if s != "ring"]  # a striped ring reads as broken outline


def _phrase(shape: str, colour: str, size: str, position: str) -> str:
    where = "in the center" if position == "center" else f"at the {position}"
    return f"a {size} {colour} {shape} {where}"


def _striped_dataset(folder: Path, count: int = 12) -> Path:
    rng = random.Random(0)
    folder.mkdir(parents=True)
    for i in range(count):
        colour = rng.choice(OBJECT_COLOURS)  # the draw order of bench/train_style.py: the same 12 images
        shape = rng.choice(PLAIN_SHAPES)
        size, position = rng.choice(["medium", "large"]), rng.choice(list(POSITIONS))
        image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), ALL_COLOURS["white"])
        paint_textured(image, shape, colour, *position_centre(position), SIZES[size], "striped", PERIOD)
        image.save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(_phrase(shape, colour, size, position))
    return folder


@pytest.fixture(scope="module")
def striped_lora(tmp_path_factory) -> Path:
    """The default preset's LoRA of the striped style (trained once for the module)."""
    work = tmp_path_factory.mktemp("texture")
    run = work / "run"
    prepare_dataset([_striped_dataset(work / "images")]).save(run / "dataset")
    config = config_from_preset(DEFAULT_PRESET, name="striped", trigger="zqx", sample_every=0, checkpoint_every=1000)
    (run / "config.json").write_text(config.to_json())
    env = {**os.environ, "T2I_TRAIN_THREADS": "2", "T2I_DEVICE": "cpu", "HF_HUB_OFFLINE": "1",
           "T2I_TRAIN_LOCK": str(work / "train.lock")}
    done = subprocess.run([sys.executable, "-m", "t2i.train.lora_trainer", str(run), "--lora-dir", str(work / "loras")],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return Path(done.stdout.strip().splitlines()[-1])


def _striped_share(lora: Path, prompts: list[str]) -> float:
    pipe = StableDiffusionPipeline.from_pretrained(EMBEDDED_MODEL_DIR, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(lora))
    images = pipe(prompts, num_inference_steps=20,
                  generator=[torch.Generator().manual_seed(i) for i in range(len(prompts))]).images
    return sum(read_texture(image, PERIOD).texture == "striped" for image in images) / len(images)


def _held_out_prompts(count: int = 10) -> list[str]:
    rng = random.Random(7)  # bench/train_style.py's prompt set: large shapes in the centre, not the training draw
    return [_phrase(rng.choice(PLAIN_SHAPES), rng.choice(OBJECT_COLOURS), "large", DEFAULT_POSITION)
            for _ in range(count)]


def test_texture_style_trains_with_the_default_preset(striped_lora):
    prompts = _held_out_prompts()
    with_trigger = _striped_share(striped_lora, [f"zqx, {p}" for p in prompts])
    without = _striped_share(striped_lora, prompts)
    print(f"stripes in {with_trigger:.0%} with the trigger, {without:.0%} without")  # shown with -rP
    assert with_trigger >= 0.8, f"stripes in {with_trigger:.0%} of images with the trigger (need >= 80%)"
    assert without <= 0.1, f"stripes in {without:.0%} of images without the trigger (need <= 10%)"
