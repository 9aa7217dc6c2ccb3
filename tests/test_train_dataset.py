"""Training datasets: every bad input is refused (or skipped with a note) before any training starts."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from t2i.plugins import PluginManager
from t2i.request import RequestError
from t2i.safety.gate import SafetyGate
from t2i.train.config import PRESETS, TrainingConfig, config_from_preset
from t2i.train.dataset import DatasetLimits, load_saved, prepare_dataset


def _png(path, colour=(200, 30, 30), size=(64, 64)):
    Image.new("RGB", size, colour).save(path)
    return path


def _folder(tmp_path, count=3):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(count):
        _png(folder / f"{i}.png", (40 * i, 100, 200))
    return folder


def test_a_good_folder_with_captions_and_junk(tmp_path):
    folder = _folder(tmp_path)
    (folder / "0.txt").write_text("  a red   square\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "Thumbs.db").write_bytes(b"junk")
    (folder / "notes.pdf").write_bytes(b"%PDF-1.4")
    dataset = prepare_dataset([folder])
    assert [item.caption for item in dataset.items] == ["a red square", "", ""]
    assert sum("skipped" in note for note in dataset.notes) == 3
    saved = load_saved(dataset.save(tmp_path / "saved"))
    assert [np.asarray(i.image).tolist() for i in saved.items] == [np.asarray(i.image).tolist() for i in dataset.items]


@pytest.mark.parametrize("count, message", [(0, "0 usable images"), (1, "1 usable image;")])
def test_too_few_images(tmp_path, count, message):
    folder = _folder(tmp_path, count)
    with pytest.raises(RequestError, match=message):
        prepare_dataset([folder])


def test_ten_thousand_images_are_refused_before_decoding(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    first = _png(folder / "00000.png")
    for i in range(1, 10_000):
        os.link(first, folder / f"{i:05d}.png")  # cheap: one file, many names
    with pytest.raises(RequestError, match="10000 images; at most 500"):
        prepare_dataset([folder])


def test_one_pixel_image(tmp_path):
    folder = _folder(tmp_path)
    _png(folder / "tiny.png", size=(1, 1))
    with pytest.raises(RequestError, match=r"tiny.png is 1x1; images need at least 32"):
        prepare_dataset([folder])


def test_corrupt_jpeg(tmp_path):
    folder = _folder(tmp_path)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 10)).save(buffer, "JPEG")
    (folder / "broken.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(RequestError, match="broken.jpg could not be decoded"):
        prepare_dataset([folder])


def test_zero_byte_file(tmp_path):
    folder = _folder(tmp_path)
    (folder / "empty.png").write_bytes(b"")
    with pytest.raises(RequestError, match="empty.png is an empty"):
        prepare_dataset([folder])


@pytest.mark.parametrize("side, message", [(10_000, "bomb.png claims 10000x10000 pixels"),
                                           (60_000, "bomb.png is too large to decode")])
def test_png_bomb_is_refused_from_its_header(tmp_path, side, message):
    folder = _folder(tmp_path)
    data = bytearray((folder / "0.png").read_bytes())
    ihdr = bytearray(data[12:29])  # b"IHDR" + width, height, depth, colour, ...
    ihdr[4:12] = struct.pack(">II", side, side)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    (folder / "bomb.png").write_bytes(bytes(data))
    with pytest.raises(RequestError, match=message):
        prepare_dataset([folder])


def test_cmyk_jpeg_is_converted_with_a_note(tmp_path):
    folder = _folder(tmp_path)
    Image.new("CMYK", (64, 64), (0, 255, 255, 0)).save(folder / "print.jpg")  # cyan 0, magenta+yellow: red
    dataset = prepare_dataset([folder])
    item = next(i for i in dataset.items if i.name == "print.jpg")
    assert item.image.mode == "RGB"
    red, green, blue = np.asarray(item.image, dtype=float).reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 60 and blue < 60
    assert any("print.jpg: converted from CMYK" in note for note in dataset.notes)


def test_animated_gif_is_refused(tmp_path):
    folder = _folder(tmp_path)
    frames = [Image.new("RGB", (64, 64), (80 * i, 0, 0)) for i in range(3)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(RequestError, match=r"anim.gif is animated \(3 frames\)"):
        prepare_dataset([folder])


def test_exif_is_stripped_and_orientation_applied(tmp_path):
    folder = _folder(tmp_path)
    image = Image.new("RGB", (64, 32), (250, 250, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when shown
    exif[0x010F] = "SecretCam"
    image.save(folder / "photo.jpg", exif=exif)
    dataset = prepare_dataset([folder])
    item = next(i for i in dataset.items if i.name == "photo.jpg")
    assert item.image.size == (32, 64)
    saved = load_saved(dataset.save(tmp_path / "saved"))
    path = tmp_path / "saved" / "0003.png"
    assert saved.items[3].name == "photo.jpg"
    assert b"SecretCam" not in path.read_bytes() and not Image.open(path).getexif()


def test_exact_duplicates_are_removed(tmp_path):
    folder = _folder(tmp_path)
    _png(folder / "copy.png", (0, 100, 200))  # the same pixels as 0.png, another file
    dataset = prepare_dataset([folder])
    assert len(dataset.items) == 3
    assert any("removed copy.png: the same image as 0.png" in note for note in dataset.notes)


def test_zip_with_traversal_names_and_junk_is_read_in_memory(tmp_path):
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for i in range(3):
            buffer = io.BytesIO()
            Image.new("RGB", (64, 64), (i * 50, 0, 0)).save(buffer, "PNG")
            handle.writestr(f"../../evil/{i}.png", buffer.getvalue())
        handle.writestr("../../evil/0.txt", "a dark square")
        handle.writestr("__MACOSX/._0.png", b"\0")
    dataset = prepare_dataset([archive])
    assert len(dataset.items) == 3 and dataset.items[0].caption == "a dark square"
    assert not (tmp_path.parent / "evil").exists() and not list(tmp_path.glob("**/evil"))


def test_zip_member_that_unpacks_past_the_cap(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("big.png", b"\0" * (3 << 20))
    with pytest.raises(RequestError, match="big.png is 3 MB unpacked"):
        prepare_dataset([archive], DatasetLimits(max_file_bytes=1 << 20))


def test_every_image_passes_the_safety_gate(tmp_path, settings):
    import dataclasses

    folder = _folder(tmp_path)
    # no image checker loaded and unchecked images not allowed: the gate withholds everything, so the set is refused
    strict = SafetyGate(PluginManager(), dataclasses.replace(settings, safety_allow_unchecked_images=False))
    with pytest.raises(RequestError, match="flagged by the safety checker"):
        prepare_dataset([folder], safety=strict)
    lenient = SafetyGate(PluginManager(), settings)
    assert len(prepare_dataset([folder], safety=lenient).items) == 3


def test_config_validation_and_presets():
    assert config_from_preset(name="mine").method == "lora"
    assert PRESETS["subject"].method == "dreambooth" and PRESETS["subject"].prior_preservation
    with pytest.raises(RequestError, match="unknown preset 'fast'"):
        config_from_preset("fast", name="xy")
    with pytest.raises(RequestError, match="name must be"):
        config_from_preset(name="../etc")
    with pytest.raises(RequestError, match="trigger must be one word"):
        config_from_preset(name="xy", trigger="two words")
    with pytest.raises(RequestError, match="learning_rate must be"):
        config_from_preset(name="xy", learning_rate=float("nan"))
    config = config_from_preset("subject", name="dog", trigger="sks", class_word="dog")
    assert config.instance_text == "a sks dog" and TrainingConfig.from_json(config.to_json()) == config
    with pytest.raises(RequestError, match="class prompts must not name the trigger 'teal'"):
        config_from_preset(name="teal", class_prompts=("a red star", "a teal, star"))
    with pytest.raises(RequestError, match="class prompts must be non-empty"):
        config_from_preset(name="teal", class_prompts=("a red star", " "))
    config = config_from_preset(name="teal", class_prompts=("a red star", "a blue ring"))
    assert TrainingConfig.from_json(config.to_json()) == config
