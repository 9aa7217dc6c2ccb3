"""The brush canvas in a real browser: strokes drawn with the mouse become the mask, and inpainting repaints only
what was painted."""

from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from t2i.embedded.world import COLOURS, Scene, ShapeObject, render
from t2i.ui.canvas import mask_from_editor
from test_browser_page import WatchedPage, open_accordions, result_images, save_png, set_number, shot

pytestmark = [pytest.mark.slow]


def test_a_mask_painted_with_the_mouse_repaints_only_the_painted_area(browser, app_url, tmp_path):
    init = render(Scene((ShapeObject("circle", "yellow", "medium", "right"),), background="blue"))
    page = WatchedPage(browser, app_url).page
    open_accordions(page)
    page.locator("#init_image input[type=file]").set_input_files(save_png(init, tmp_path, "init.png"))
    page.locator("#init_image img").wait_for()
    editor = page.locator("#mask_canvas")
    editor.locator("canvas").first.wait_for()
    left, top, side = _shown_image(page, editor)
    # one stroke (one mask update), zigzagging over the right half of the image: columns 38 to 62
    page.mouse.move(left + side * 38 / 64, top + side * 4 / 64)
    page.mouse.down()
    for row in range(4, 64, 6):
        for column in (38, 62) if row % 12 == 4 else (62, 38):
            page.mouse.move(left + side * column / 64, top + side * row / 64, steps=8)
    page.mouse.up()
    page.locator("#mask img").wait_for(timeout=30_000)
    page.locator("#prompt textarea").fill("a red square on the right on a blue background")
    set_number(page, "Denoising strength", 1)
    page.locator("#seed input").fill("3")
    page.locator("#generate").click()
    result = np.asarray(result_images(page, app_url, seed=3)[0], float)
    shot(page, "page-canvas-inpaint.png")
    change = np.abs(result - np.asarray(init, float)).mean(axis=2)
    assert change[:, :28].mean() < 2, f"unpainted area changed by {change[:, :28].mean():.1f} on average"
    assert change[:, 40:].mean() > 15, f"painted area changed by only {change[:, 40:].mean():.1f}"


def _shown_image(page, editor) -> tuple[float, float, float]:
    """Where the editor shows the 64x64 blue init image on the page: its left, top and side, found in a
    screenshot of the editor (the editor zooms and centres the image itself)."""
    for _ in range(200):  # until the canvas shows the image (WebGL pixels cannot be awaited from the page)
        editor.scroll_into_view_if_needed()
        shown = np.asarray(Image.open(BytesIO(editor.screenshot())).convert("RGB"), int)
        box = editor.bounding_box()  # in the viewport, as the mouse moves, once scrolled
        blue = np.abs(shown - COLOURS["blue"]).sum(axis=2) < 60
        rows, cols = np.nonzero(blue)
        if rows.size > 1000:
            break
    else:
        raise AssertionError("the init image never showed on the canvas")
    scale = shown.shape[1] / box["width"]  # screenshot pixels per CSS pixel
    return box["x"] + cols.min() / scale, box["y"] + rows.min() / scale, (cols.max() - cols.min() + 1) / scale


def test_only_painted_pixels_become_the_mask():
    layer = np.zeros((4, 6, 4), np.uint8)
    layer[1:3, 4:6] = (255, 255, 255, 200)
    mask = np.asarray(mask_from_editor({"background": None, "layers": [layer], "composite": None}))
    assert mask.shape == (4, 6) and mask[1:3, 4:6].min() == 255 and mask.sum() == 4 * 255
    assert mask_from_editor({"background": None, "layers": [np.zeros((4, 6, 4), np.uint8)]}) is None
    assert mask_from_editor(None) is None
