"""The Train tab's "Check images" round-trips the uploads through the chosen base model's own VAE at its training size
(a tiny SDXL folder here), not the embedded model's; a base model whose VAE is not here without a download is checked
with the embedded VAE and the note says so (t2i/train/check_vae.py)."""

from __future__ import annotations

import dataclasses
import json

import gradio as gr
import pytest
from diffusers import AutoencoderKL
from PIL import Image

from t2i.embedded.world import POSITIONS, Scene, position_centre, render
from t2i.eval.texture import paint_textured
from t2i.studio import Studio
from t2i.train.style_check import detail_check
from t2i.ui.train_tab import create_train_tab


@pytest.fixture(scope="module")
def check_images(settings, tiny_sdxl_dir):
    """The Train tab's "Check images" handler, on a studio whose model folder holds the tiny SDXL folder; it is
    called with the values the page sends for the event's inputs (uploaded files, and the Base model box)."""
    studio = Studio(dataclasses.replace(settings, model_dir=tiny_sdxl_dir.parent))
    with gr.Blocks() as demo:
        create_train_tab(studio)
    button = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "train_check")
    event = next(fn for fn in demo.fns.values() if (button._id, "click") in fn.targets)

    def check(paths: list[str], base_model: str) -> tuple[list[Image.Image], str]:
        sent = {"train_files": paths, "train_base_model": base_model}
        _, gallery, _, notes = event.fn(*[sent[block.elem_id] for block in event.inputs])
        return [Image.open(path).convert("RGB") for path, _ in gallery], notes

    return check


@pytest.fixture(scope="module")
def striped_files(tmp_path_factory) -> list[str]:
    """Three shapes with 4 px stripes: detail the embedded VAE loses (tests/test_texture_measure.py)."""
    folder, files = tmp_path_factory.mktemp("striped"), []
    for index, (position, colour) in enumerate(zip(list(POSITIONS)[:3], ("red", "blue", "green"))):
        image = render(Scene((), "white"))
        paint_textured(image, "square", colour, *position_centre(position), 24, "striped", 4)
        image.save(folder / f"{index}.png")
        files.append(str(folder / f"{index}.png"))
    return files


def test_check_images_uses_the_chosen_sdxl_folders_own_vae_at_its_size(check_images, striped_files, tiny_sdxl_dir):
    images, notes = check_images(striped_files, tiny_sdxl_dir.name)
    vae = AutoencoderKL.from_pretrained(tiny_sdxl_dir / "vae")
    latents = json.loads((tiny_sdxl_dir / "unet" / "config.json").read_text())["sample_size"]
    size = latents * 2 ** (len(vae.config.block_out_channels) - 1)  # the size the pipeline makes, and trains at
    expected = detail_check(images, vae, size, repr(tiny_sdxl_dir.name)).note
    assert expected and expected in notes  # the random tiny VAE keeps little detail, so the note is there
    assert f"{tiny_sdxl_dir.name!r}'s VAE keeps only" in notes and "embedded" not in notes

    _, on_embedded = check_images(striped_files, "embedded")
    assert "at the training size (64 px) the embedded model's VAE keeps only" in on_embedded


def test_a_base_model_whose_vae_is_not_here_is_checked_with_the_embedded_vae_and_says_so(check_images,
                                                                                         striped_files):
    _, notes = check_images(striped_files, "someone/not-here")
    assert "the embedded model's VAE keeps only" in notes
    assert "checked with the embedded model's VAE at its size, not 'someone/not-here''s" in notes
