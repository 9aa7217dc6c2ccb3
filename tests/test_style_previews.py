"""Style preview thumbnails: one per built-in preset, made by scripts/style_previews.py from its recipe."""

import numpy as np
from PIL import Image

from t2i.recipes.pnginfo import read_png
from t2i.request import GenerationRequest
from t2i.style_files import load_styles
from t2i.styles import BUILTIN_STYLES_DIR, preview_path


def test_every_builtin_style_has_a_preview_made_with_it():
    for name in load_styles([BUILTIN_STYLES_DIR]).names():
        read = read_png(preview_path(name))
        assert read.form["styles"] == [name], name


def test_a_preview_replays_from_its_recipe(engine):
    name = load_styles([BUILTIN_STYLES_DIR]).names()[0]
    path = preview_path(name)
    replay = engine.generate(GenerationRequest(**read_png(path).form)).images[0].image
    shipped = np.asarray(Image.open(path).convert("RGB"), dtype=float)
    assert np.abs(np.asarray(replay, dtype=float) - shipped).mean() < 1.0
