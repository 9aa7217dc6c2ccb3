"""ControlNet preprocessors: offline ones make exact-size deterministic maps that follow the image; weighted
ones load from a local folder when the file is there and say what is missing when it is not."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from scipy import ndimage

from t2i.embedded.training.train_controlnet import canny_map, draw, object_mask, placed_scene
from t2i.plugins import PluginManager
from t2i.request import RequestError


@pytest.fixture(scope="module")
def controlnet(settings):
    return PluginManager.discover(settings).plugins["controlnet"]


def _scene():
    scene, placed = placed_scene(random.Random(7), two_objects=False)
    return draw(scene, placed), object_mask(scene, placed[0])


@pytest.mark.parametrize("name", ["none", "canny", "lineart_standard", "shuffle", "threshold"])
@pytest.mark.parametrize("size", [(64, 64), (96, 72)])
def test_offline_preprocessors_make_exact_size_deterministic_maps(controlnet, name, size):
    image, _ = _scene()
    first = controlnet.preprocessors.run(name, image, *size)
    again = controlnet.preprocessors.run(name, image, *size)
    assert first.size == size and first.mode == "RGB"
    assert first.tobytes() == again.tobytes()  # shuffle too: its random field is seeded per call


def test_canny_map_traces_the_shape_outline_and_matches_training(controlnet):
    image, mask = _scene()
    edges = np.asarray(controlnet.preprocessors.run("canny", image, 64, 64).convert("L")) > 127
    assert np.array_equal(np.asarray(canny_map(image).convert("L")) > 127, edges)  # what the ControlNet learned
    outline = ndimage.binary_dilation(mask, iterations=2) & ~ndimage.binary_erosion(mask, iterations=2)
    assert edges.sum() > 20
    assert (edges & outline).sum() / edges.sum() > 0.95  # measured: edge pixels lie on the outline


def test_threshold_turns_a_dark_scribble_into_white_strokes(controlnet):
    scribble = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(scribble).ellipse((10, 10, 50, 50), outline="black", width=3)
    strokes = np.asarray(controlnet.preprocessors.run("threshold", scribble, 64, 64).convert("L")) > 127
    drawn = np.asarray(scribble.convert("L")) < 128
    assert np.array_equal(strokes, drawn)


def test_a_weighted_preprocessor_without_its_file_says_what_is_missing(settings, tmp_path):
    empty = tmp_path / "annotators"
    empty.mkdir()
    plugin = PluginManager.discover(dataclasses.replace(settings, annotators=str(empty))).plugins["controlnet"]
    with pytest.raises(RequestError, match="depth_midas' needs the weights file 'dpt_hybrid-midas-501f0c75.pt'.*"
                                           "T2I_ANNOTATORS.*canny"):
        plugin.preview({"image": _scene()[0], "preprocessor": "depth_midas"}, 64, 64)


def test_a_weighted_preprocessor_loads_from_a_local_folder(settings, tmp_path):
    from controlnet_aux.hed import ControlNetHED_Apache2

    folder = tmp_path / "annotators"
    folder.mkdir()
    torch.manual_seed(0)
    torch.save(ControlNetHED_Apache2().state_dict(), folder / "ControlNetHED.pth")  # random weights, real network
    plugin = PluginManager.discover(dataclasses.replace(settings, annotators=str(folder))).plugins["controlnet"]
    image, _ = _scene()
    soft = plugin.preview({"image": image, "preprocessor": "softedge_hed"}, 64, 64)
    scribble = plugin.preview({"image": image, "preprocessor": "scribble_hed"}, 64, 64)
    assert soft.size == scribble.size == (64, 64)
    assert set(np.unique(np.asarray(scribble))) <= {0, 255}  # the scribble variant is binary
