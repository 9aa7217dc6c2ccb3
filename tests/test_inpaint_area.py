"""Masked content (original / fill / latent noise / latent nothing) and inpaint area "Only masked" on the embedded
model, measured with the analyzer; their A1111 names in recipes, the /sdapi img2img body and the CLI."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from t2i.api.sdapi import _form
from t2i.api.sdapi_schema import Img2ImgBody
from t2i.api.images import base64_text
from t2i.cli import _request_from_flags, build_parser
from t2i.embedded.world import Scene, ShapeObject, render
from t2i.eval.analyzer import analyze, named_colour_share
from t2i.plugins import PluginManager
from t2i.recipes.infotext import infotext, png_bytes
from t2i.recipes.pnginfo import parse_infotext
from t2i.request import GenerationRequest, RequestError

RED_ON_BLUE = render(Scene((ShapeObject("circle", "red", "large", "center"),), "blue"))  # 64x64
CIRCLE = Image.new("L", (64, 64), 0)
ImageDraw.Draw(CIRCLE).ellipse((12, 12, 52, 52), fill=255)  # covers the large circle
INSIDE = (20, 20, 44, 44)


def inpaint(engine, **fields):
    request = {"prompt": "a blue background", "init_image": RED_ON_BLUE, "mask": CIRCLE, "seed": 1, "steps": 10,
               "strength": 0.3, **fields}
    return engine.generate(GenerationRequest(**request)).images[0]


def test_masked_content_decides_what_the_masked_area_starts_from(engine):
    items = {content: inpaint(engine, masked_content=content)
             for content in ("original", "fill", "latent noise", "latent nothing")}
    inside = {content: item.image.crop(INSIDE) for content, item in items.items()}
    # measured (seed 1, strength 0.3): original keeps a red share of 0.31 (mean RGB 213, 95, 51), blue 0.1; fill
    # starts from the surrounding blue and stays blue (1.0); latent noise / nothing start from no image at all
    share = {content: {colour: named_colour_share(image, [colour], 60) for colour in ("red", "blue")}
             for content, image in inside.items()}
    assert share["original"]["red"] > 0.2 > share["original"]["blue"]
    assert share["fill"]["blue"] > 0.9 and share["fill"]["red"] == 0
    pixels = {content: np.asarray(image, float) for content, image in inside.items()}
    for first, second in (("latent noise", "latent nothing"), ("latent noise", "original"),
                          ("latent nothing", "original"), ("latent nothing", "fill")):
        assert np.abs(pixels[first] - pixels[second]).mean() > 20, (first, second)
    outside = np.asarray(CIRCLE) == 0  # never changed, whatever the masked area started from
    for item in items.values():
        assert np.array_equal(np.asarray(item.image)[outside], np.asarray(RED_ON_BLUE)[outside])
    assert "Masked content" not in infotext(items["original"].parameters)  # as A1111: nothing for "original"
    assert "Masked content: latent noise" in infotext(items["latent noise"].parameters)
    again = inpaint(engine, masked_content="latent noise")
    assert png_bytes(again.image, again.parameters) == png_bytes(items["latent noise"].image,
                                                                 items["latent noise"].parameters)


def test_only_masked_repaints_the_box_at_full_size_and_keeps_every_other_pixel(engine):
    init = render(Scene((ShapeObject("square", "green", "small", "top left"),), "white")).resize(
        (128, 128), Image.Resampling.NEAREST)
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (64, 64, 112, 112))
    item = engine.generate(GenerationRequest(
        prompt="a large red circle in the center on a blue background", init_image=init, mask=mask, seed=3,
        steps=20, strength=1.0, inpaint_area="Only masked", inpaint_padding=0)).images[0]
    assert item.image.size == (128, 128)  # the init image's size; the 48 px box was made at 64 px
    outside = np.asarray(mask) == 0
    assert np.array_equal(np.asarray(item.image)[outside], np.asarray(init)[outside])
    # the whole 64 px scene the prompt asks for is inside the box: measured a large red circle, centred, on blue
    analysis = analyze(item.image.crop((64, 64, 112, 112)).resize((64, 64), Image.Resampling.LANCZOS))
    assert analysis.background == "blue"
    assert [(o.shape, o.colour, o.position) for o in analysis.objects] == [("circle", "red", "center")]
    text = infotext(item.parameters)
    assert "Inpaint area: Only masked" in text and "Masked area padding: 0" in text
    form = parse_infotext(text).form
    assert (form["inpaint_area"], form["inpaint_padding"]) == ("Only masked", 0)


@pytest.mark.parametrize("fields, message", [
    ({"masked_content": "noise"}, "masked_content must be one of: original, fill, latent noise, latent nothing"),
    ({"inpaint_area": "only masked"}, "inpaint_area must be one of: Whole picture, Only masked"),
    ({"inpaint_padding": 300}, "inpaint_padding must be a whole number of pixels from 0 to 256"),
    ({"mask": Image.new("L", (64, 64), 0), "inpaint_area": "Only masked"}, "needs a mask with something to repaint"),
])
def test_bad_inpainting_options_are_clear_errors(engine, fields, message):
    with pytest.raises(RequestError, match=message):
        inpaint(engine, **fields)


def test_the_a1111_body_and_the_cli_name_the_options(settings, tmp_path):
    image, mask = (base64_text(_png(picture)) for picture in (RED_ON_BLUE, CIRCLE))
    body = Img2ImgBody(prompt="x", init_images=[image], mask=mask, mask_blur=4, inpainting_fill=2,
                       inpaint_full_res=True, inpaint_full_res_padding=16)
    form = _form(body, "embedded", settings)
    assert (form.mask_blur, form.masked_content, form.inpaint_area, form.inpaint_padding) == (
        4, "latent noise", "Only masked", 16)
    assert body.ignored() == {}
    plain = Img2ImgBody(prompt="x", init_images=[image], inpainting_fill=0, inpaint_full_res=True)  # no mask
    assert _form(plain, "embedded", settings).masked_content == "original"
    assert set(plain.ignored()) == {"inpainting_fill", "inpaint_full_res"}
    with pytest.raises(RequestError, match="inpainting_fill must be 0 \\(fill\\), 1 \\(original\\)"):
        _form(Img2ImgBody(prompt="x", init_images=[image], mask=mask, inpainting_fill=4), "embedded", settings)
    RED_ON_BLUE.save(tmp_path / "init.png")
    CIRCLE.save(tmp_path / "mask.png")
    generate = build_parser(PluginManager())._subparsers._group_actions[0].choices["generate"]
    args = generate.parse_args(["a blue background", "-o", str(tmp_path / "out.png"), "--init-image",
                                str(tmp_path / "init.png"), "--mask", str(tmp_path / "mask.png"), "--masked-content",
                                "fill", "--inpaint-area", "Only masked", "--inpaint-padding", "8"])
    request = _request_from_flags(args)
    assert (request.masked_content, request.inpaint_area, request.inpaint_padding) == ("fill", "Only masked", 8)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_sdxl_takes_latent_content_and_only_masked_and_keeps_the_unmasked_pixels(engine, tiny_sdxl_dir):
    init = Image.new("RGB", (64, 64), (200, 30, 30))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    made = {}
    for content, area in (("original", "Whole picture"), ("latent nothing", "Whole picture"),
                          ("latent noise", "Only masked")):
        item = engine.generate(GenerationRequest(
            prompt="a cat", model=str(tiny_sdxl_dir), init_image=init, mask=mask, steps=2, seed=1, strength=0.5,
            width=64, height=64, masked_content=content, inpaint_area=area, inpaint_padding=8)).images[0]
        pixels = np.asarray(item.image)
        assert np.array_equal(pixels[np.asarray(mask) == 0], np.asarray(init)[np.asarray(mask) == 0])
        made[content] = pixels.astype(float)
    # zeroed latents start the masked area elsewhere than the red init image's (measured: 8 levels apart on average)
    assert np.abs(made["original"] - made["latent nothing"]).mean() > 2
