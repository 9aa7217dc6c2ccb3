"""Outpainting, mask blur and "inpaint not masked" on the embedded model, measured with the analyzer."""

import numpy as np
import pytest
from PIL import Image

from t2i.cli import _request_from_flags, build_parser
from t2i.embedded.world import Scene, ShapeObject, render
from t2i.eval.analyzer import named_colour_share
from t2i.plugins import PluginManager
from t2i.recipes.infotext import infotext, png_bytes
from t2i.request import GenerationRequest, RequestError

INIT = render(Scene((ShapeObject("circle", "red", "large", "center"),), "white"))  # 64x64


def run(engine, **fields):
    return engine.generate(GenerationRequest(**{"steps": 20, "seed": 1, "strength": 1.0, **fields})).images[0]


def _border_share(image: Image.Image, colour: str) -> float:
    """Share of the new 16-pixel strips left and right that is `colour`."""
    return np.mean([named_colour_share(image.crop(box), [colour], 60) for box in ((0, 0, 16, 64), (80, 0, 96, 64))])


def test_outpainting_keeps_the_original_and_fills_the_border_as_the_prompt_says(engine):
    sides = {"outpaint_left": 16, "outpaint_right": 16}
    blue = run(engine, prompt="a large red circle on a blue background", init_image=INIT, **sides)
    white = run(engine, prompt="a large red circle on a white background", init_image=INIT, **sides)
    assert blue.image.size == (96, 64) and blue.parameters["mode"] == "inpaint"
    for item in (blue, white):  # the original area is kept (composited back, so exactly)
        assert np.abs(np.asarray(item.image, float)[:, 16:80] - np.asarray(INIT, float)).mean() < 1
    # the new area starts as the white edge stretched out; the prompt's colour must win over it.
    # measured: blue border share 0.43 (mean RGB 91, 82, 198); with "white background" 0.0 blue, 1.0 white
    assert _border_share(blue.image, "blue") > 0.25 > 0.05 > _border_share(white.image, "blue")
    assert _border_share(white.image, "white") > 0.25 > _border_share(blue.image, "white")
    again = run(engine, prompt="a large red circle on a blue background", init_image=INIT, **sides)
    assert png_bytes(again.image, again.parameters) == png_bytes(blue.image, blue.parameters)
    assert blue.parameters["outpaint_left"] == 16 and blue.parameters["outpaint_top"] == 0


def test_inpaint_not_masked_repaints_the_black_part_and_mask_blur_is_recorded(engine):
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))  # white right half: with "inpaint not masked" the left half is repainted
    item = run(engine, prompt="a large blue square on a black background", init_image=INIT, mask=mask,
               inpainting_mask_invert=1)
    before, after = np.asarray(INIT, float), np.asarray(item.image, float)
    assert np.array_equal(before[:, 32:], after[:, 32:])
    assert np.abs(before[:, :32] - after[:, :32]).mean() > 30
    assert "Mask mode: Inpaint not masked" in infotext(item.parameters)
    blurred = run(engine, prompt="a large blue square on a black background", init_image=INIT, mask=mask,
                  mask_blur=4, steps=4)
    assert "Mask blur: 4" in infotext(blurred.parameters)
    # a soft edge: columns just left of the mask's edge are blended, far from it they are kept exactly
    before, after = np.asarray(INIT, float), np.asarray(blurred.image, float)
    assert np.array_equal(before[:, :20], after[:, :20])
    assert np.abs(before[:, 28:32] - after[:, 28:32]).mean() > 0


@pytest.mark.parametrize("fields, message", [
    ({"outpaint_left": 12}, "outpaint_left must be a multiple of 8"),
    ({"outpaint_top": 4096}, "outpaint_top must be a multiple of 8 from 0 to"),
    ({"outpaint_right": 1000, "outpaint_left": 1000}, "the outpainted canvas 2064x64 is beyond the limits"),
    ({"outpaint_bottom": 16, "init_image": None}, "outpainting needs an init image"),
    ({"mask_blur": 65}, "mask_blur must be a whole number of pixels from 0 to 64"),
    ({"inpainting_mask_invert": 2}, "inpainting_mask_invert must be 0 (inpaint masked) or 1"),
])
def test_bad_canvas_input_is_a_clear_error(engine, settings, fields, message):
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        engine.generate(GenerationRequest(**{"prompt": "a red circle", "init_image": INIT, **fields}))


def test_the_cli_reads_the_init_image_and_mask_files_and_the_outpaint_flags(tmp_path):
    INIT.save(tmp_path / "init.png")
    Image.new("L", (64, 64), 255).save(tmp_path / "mask.png")
    generate = build_parser(PluginManager())._subparsers._group_actions[0].choices["generate"]
    args = generate.parse_args(["a red circle", "-o", str(tmp_path / "out.png"), "--init-image",
                                str(tmp_path / "init.png"), "--mask", str(tmp_path / "mask.png"), "--outpaint-top",
                                "8", "--mask-blur", "4", "--strength", "1", "--inpaint-not-masked", "1"])
    request = _request_from_flags(args)
    assert request.init_image.tobytes() == INIT.tobytes() and request.mask.size == (64, 64)
    assert (request.outpaint_top, request.mask_blur, request.strength, request.inpainting_mask_invert) == (8, 4, 1, 1)
    assert request.mode == "inpaint"
