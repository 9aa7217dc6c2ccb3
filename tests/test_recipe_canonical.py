"""The same recipe gives the same metadata bytes, however its numbers arrived (issue 23: CFG 5 against 5.0)."""

from __future__ import annotations

from t2i.recipes.infotext import png_bytes
from t2i.request import GenerationRequest


def test_cfg_5_and_5_0_give_identical_png_metadata(engine):
    made = [engine.generate(GenerationRequest(prompt="a red star", seed=7, steps=2, cfg=cfg)).images[0]
            for cfg in (5, 5.0)]
    assert [image.parameters["cfg"] for image in made] == [5.0, 5.0]
    first, second = (png_bytes(image.image, image.parameters) for image in made)
    assert first == second
    assert b"CFG scale: 5.0," in first
