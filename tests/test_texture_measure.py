"""The texture measure (t2i/eval/texture.py) and the dataset pre-check (t2i/train/style_check.py), validated on
ground-truth renders: every texture is read back on the renders, and the VAE pre-check tells patterns the
embedded VAE loses from those it carries."""

import json
import random
from pathlib import Path

import pytest
from PIL import Image

from t2i.embedded.world import COLOURS, POSITIONS, SIZES, Scene, ShapeObject, position_centre, render
from t2i.eval.texture import TEXTURES, paint_textured, read_texture
from t2i.settings import Settings
from t2i.train.check_vae import file_detail_notes
from t2i.train.style_check import (MIN_DETAIL_KEPT, TRAINED_SHARES, detail_kept, embedded_detail_check,
                                   embedded_notes)

OBJECT_COLOURS = [c for c in COLOURS if c != "white"]


def _renders(texture, count, period=8, seed=0, background="white"):
    rng = random.Random(seed)
    images = []
    for _ in range(count):
        image = render(Scene((), background))
        colour = rng.choice([c for c in OBJECT_COLOURS if c != background])
        paint_textured(image, rng.choice(("circle", "square", "triangle", "star", "heart")), colour,
                       *position_centre(rng.choice(list(POSITIONS))), SIZES[rng.choice(["medium", "large"])],
                       texture, period)
        images.append(image)
    return images


@pytest.mark.parametrize("texture", TEXTURES)
def test_every_texture_is_read_back_from_its_renders(texture):
    images = _renders(texture, 6, seed=TEXTURES.index(texture)) + _renders(texture, 2, seed=9, background="gray")
    assert [read_texture(image).texture for image in images] == [texture] * len(images)


def test_small_solid_shapes_and_the_empty_image():
    shapes = ("star", "heart", "circle")  # not "ring": a ring is an outlined circle, and reads so
    small = [render(Scene((ShapeObject(shape, "blue", "small", "left"),))) for shape in shapes]
    assert [read_texture(image).texture for image in small] == ["solid"] * 3
    assert read_texture(render(Scene(()))).texture == ""


def test_detail_kept_is_one_for_a_copy_and_falls_for_a_blur():
    image = _renders("striped", 1)[0]
    assert detail_kept(image, image) == 1.0
    assert detail_kept(image, image.resize((16, 16), Image.Resampling.BOX).resize((64, 64))) < 0.2


def test_precheck_refuses_patterns_the_vae_loses_and_passes_those_it_carries():
    fine = embedded_detail_check(_renders("striped", 4, period=4))  # the world's own 4 px stripes
    coarse = embedded_detail_check(_renders("striped", 4, period=8))
    plain = embedded_detail_check(_renders("solid", 4))
    assert fine.median < MIN_DETAIL_KEPT and "will not train" in fine.note
    assert coarse.median > MIN_DETAIL_KEPT and coarse.note is None
    assert plain.note is None
    big = [image.resize((512, 512), Image.Resampling.NEAREST) for image in _renders("striped", 4, period=8)]
    assert embedded_detail_check(big).note is None  # scaled to the training size first


def test_precheck_warns_for_8px_checkers_but_not_8px_dots():
    # the VAE still reads 8 px checkers back, but keeps under half their fine detail, and even a full UNet
    # fine-tune did not learn to draw them (bench/results/texture_diagnosis_full_checkered.json)
    checkers = embedded_detail_check(_renders("checkered", 8, period=8))
    dots = embedded_detail_check(_renders("dotted", 8, period=8))
    assert checkers.median < MIN_DETAIL_KEPT and "will not train" in checkers.note
    assert dots.median > MIN_DETAIL_KEPT and dots.note is None


def test_the_train_tab_note_reads_the_checked_files(tmp_path):
    files = []
    for i, image in enumerate(_renders("dotted", 3, period=4)):
        image.resize((256, 256), Image.Resampling.NEAREST).save(tmp_path / f"{i}.png")
        files.append(str(tmp_path / f"{i}.png"))
    settings = Settings(device="cpu", data_dir=tmp_path / "data")
    [note] = file_detail_notes(files, "embedded", settings)
    assert "the embedded model's VAE keeps only" in note
    assert file_detail_notes([], "embedded", settings) == []


def test_the_train_command_prints_the_same_note(tmp_path):
    from t2i.train.command import dataset_notes
    from t2i.train.config import config_from_preset
    from t2i.train.dataset import prepare_dataset

    for index, image in enumerate(_renders("striped", 3, period=4)):
        image.save(tmp_path / f"{index}.png")
    dataset = prepare_dataset([tmp_path])
    on_embedded = dataset_notes(dataset, config_from_preset(name="stripes"))
    assert any("the embedded model's VAE keeps only" in note for note in on_embedded)
    elsewhere = dataset_notes(dataset, config_from_preset(name="stripes", base_model="/some/sdxl"))
    assert any("checked with the embedded model's VAE" in note for note in elsewhere)  # its VAE is not here


def test_check_images_says_what_8px_dots_and_outlines_reached_but_not_for_stripes(tmp_path):
    # the shares come from training runs (bench/results/train_style_{dotted,outlined}_*.json); stripes trained to 80%
    for texture, word in (("dotted", "dots"), ("outlined", "outlines")):
        [note] = embedded_notes(_renders(texture, 6, period=8))
        shares = TRAINED_SHARES[texture]
        assert f"show {word}" in note and f"{shares[1]:.0%}" in note and f"{shares[2]:.0%}" in note
    assert embedded_notes(_renders("striped", 6, period=8)) == []
    assert embedded_notes(_renders("solid", 6)) == []
    files = []
    for i, image in enumerate(_renders("dotted", 3, period=8)):
        image.resize((256, 256), Image.Resampling.NEAREST).save(tmp_path / f"{i}.png")
        files.append(str(tmp_path / f"{i}.png"))
    [note] = file_detail_notes(files, "embedded", Settings(device="cpu", data_dir=tmp_path / "data"))
    assert "show dots" in note  # what the Train tab's "Check images" shows


def test_the_shares_check_images_quotes_are_those_of_the_training_runs():
    # TRAINED_SHARES is copied from bench/results: the preset's 20-prompt run, and the best 20-prompt run of any change
    results = Path(__file__).resolve().parent.parent / "bench" / "results"
    for texture, (_, preset_share, best_share, _) in TRAINED_SHARES.items():
        runs = [json.loads(path.read_text()) for path in results.glob(f"train_style_{texture}_*.json")]
        runs = [run["style"] for run in runs if run["prompts"] == 20]
        # the preset on the bench's drawn images (runs on --every-shape images record all five shapes)
        assert preset_share == next(run["with_trigger"] for run in runs
                                    if not run["settings"] and len(run.get("image_shapes", ())) < 5)
        assert best_share == max(run["with_trigger"] for run in runs)
    # the best outlines setting, trained again with seed 1
    again = json.loads((results / "train_style_outlined_minsnr5_prior0.5_rank32_seed1.json").read_text())["style"]
    assert f"another seed it drew them in {again['with_trigger']:.0%}" in TRAINED_SHARES["outlined"][3]
