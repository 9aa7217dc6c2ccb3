"""ControlNet plugin on tiny random SD 1.x and SDXL pipelines: single and multi units, every mode, guidance
windows, caching, refusals, and the preprocessors (offline ones, and a weighted one from a local folder)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from tiny_components import clip_config, tiny_parts
from t2i.generation.engine import Engine
from t2i.request import GenerationRequest, RequestError


def _tiny_controlnet(unet, folder, seed):
    """ControlNetModel.from_unet with its zero convolutions randomised, so it has a measurable effect."""
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))  # VAE scales 2x
    torch.manual_seed(seed)
    with torch.no_grad():
        for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                      controlnet.controlnet_cond_embedding.conv_out]:
            block.weight.normal_(0, 0.3)
    controlnet.save_pretrained(folder, safe_serialization=True)


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory, tiny_sdxl_dir):
    """A tiny SD 1.x pipeline folder and a ControlNet library with two SD and one SDXL ControlNet."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    unet, vae, scheduler, tokenizer = tiny_parts(32)
    torch.manual_seed(1)
    sd = StableDiffusionPipeline(vae=vae, text_encoder=CLIPTextModel(clip_config(tokenizer)), tokenizer=tokenizer,
                                 unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                 requires_safety_checker=False)
    sd_dir = tmp_path_factory.mktemp("tiny-sd")
    sd.save_pretrained(sd_dir, safe_serialization=True)
    library = tmp_path_factory.mktemp("controlnets")
    _tiny_controlnet(unet, library / "tiny-sd-a", seed=2)
    _tiny_controlnet(unet, library / "tiny-sd-b", seed=3)
    _tiny_controlnet(UNet2DConditionModel.from_pretrained(tiny_sdxl_dir / "unet"), library / "tiny-sdxl", seed=4)
    return sd_dir, library


@pytest.fixture(scope="module")
def tiny_engine(settings, tiny_setup):
    return Engine(dataclasses.replace(settings, controlnet_dirs=(tiny_setup[1],)))


def _control_image(box=(8, 8, 40, 40)) -> Image.Image:
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).rectangle(box, fill="black")
    return image


def _unit(model, **extra):
    return {"image": _control_image(), "preprocessor": "canny", "model": model, **extra}


def _pixels(engine, model_dir, units=None, **extra) -> np.ndarray:
    request = GenerationRequest(prompt="a red square", seed=5, steps=4, width=64, height=64, model=str(model_dir),
                                plugin_units={"controlnet": units} if units else {}, **extra)
    return np.asarray(engine.generate(request).images[0].image, dtype=np.int16)


@pytest.mark.parametrize("which, cn", [("sd", "tiny-sd-a"), ("sdxl", "tiny-sdxl")])
def test_control_changes_the_image_deterministically_and_leaves_the_model_as_it_was(
        tiny_engine, tiny_setup, tiny_sdxl_dir, which, cn):
    model_dir = tiny_setup[0] if which == "sd" else tiny_sdxl_dir
    base = _pixels(tiny_engine, model_dir)
    controlled = _pixels(tiny_engine, model_dir, [_unit(cn)])
    assert np.abs(controlled - base).mean() > 2.0  # measured effect of a randomised ControlNet
    assert np.array_equal(controlled, _pixels(tiny_engine, model_dir, [_unit(cn)]))
    assert np.array_equal(base, _pixels(tiny_engine, model_dir))  # nothing left behind on the pipeline
    model = tiny_engine.models.get(str(model_dir))
    assert not hasattr(model.pipeline, "controlnet")
    assert list(model.cache["controlnets"]) == [cn]  # loaded once, kept on the model


def test_multi_controlnet_combines_units_with_their_own_scales(tiny_engine, tiny_setup):
    sd_dir = tiny_setup[0]
    a = _pixels(tiny_engine, sd_dir, [_unit("tiny-sd-a")])
    both = _pixels(tiny_engine, sd_dir, [_unit("tiny-sd-a"), _unit("tiny-sd-b", scale=0.7)])
    b_off = _pixels(tiny_engine, sd_dir, [_unit("tiny-sd-a"), _unit("tiny-sd-b", scale=0.0)])
    assert np.abs(both - a).mean() > 1.0
    assert np.abs(b_off - a).max() <= 1  # a unit at scale 0 adds nothing (up to float rounding)


def test_guidance_window_start_end(tiny_engine, tiny_setup):
    sd_dir = tiny_setup[0]
    base = _pixels(tiny_engine, sd_dir)
    assert np.array_equal(_pixels(tiny_engine, sd_dir, [_unit("tiny-sd-a", start=0.0, end=0.0)]), base)
    full = _pixels(tiny_engine, sd_dir, [_unit("tiny-sd-a")])
    late = _pixels(tiny_engine, sd_dir, [_unit("tiny-sd-a", start=0.75)])
    # one of four steps under control lies between none and all
    assert 0 < np.abs(late - base).mean() < np.abs(full - base).mean()


@pytest.mark.parametrize("which", ["sd", "sdxl"])
def test_img2img_and_inpaint_take_control_images(tiny_engine, tiny_setup, tiny_sdxl_dir, which):
    model_dir, cn = (tiny_setup[0], "tiny-sd-a") if which == "sd" else (tiny_sdxl_dir, "tiny-sdxl")
    init = Image.new("RGB", (64, 64), (40, 120, 200))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)
    for extra in ({"init_image": init, "strength": 0.8}, {"init_image": init, "mask": mask, "strength": 0.9}):
        plain = _pixels(tiny_engine, model_dir, **extra)
        controlled = _pixels(tiny_engine, model_dir, [_unit(cn)], **extra)
        assert np.abs(controlled - plain).mean() > 1.0
        if "mask" in extra:  # unmasked pixels are kept exactly
            assert np.array_equal(controlled[:, 32:], plain[:, 32:])


def test_a_controlnet_for_another_architecture_is_refused(tiny_engine, tiny_setup):
    with pytest.raises(RequestError, match="ControlNet 'tiny-sdxl' does not fit model .*SDXL"):
        _pixels(tiny_engine, tiny_setup[0], [_unit("tiny-sdxl")])
    assert _pixels(tiny_engine, tiny_setup[0]).shape == (64, 64, 3)  # and the engine keeps serving


@pytest.mark.parametrize("values, message", [
    ({"preprocessor": "canny", "model": "tiny-sd-a"}, "image is required"),
    ({"image": _control_image(), "model": "nope"}, "unknown model 'nope'"),
    ({"image": _control_image(), "model": "tiny-sd-a", "preprocessor": "sobel"}, "unknown preprocessor 'sobel'"),
    ({"image": _control_image(), "model": "tiny-sd-a", "start": 0.6, "end": 0.4}, "start .0.6. must not be after end"),
    ({"image": _control_image(), "model": "tiny-sd-a", "scale": 3.0}, "scale must be from 0.0 to 2.0"),
])
def test_bad_units_are_refused(tiny_engine, values, message):
    with pytest.raises(RequestError, match=message):
        tiny_engine.plugins.units_for_request({"controlnet": [values]})


def test_hub_models_are_offered_but_fail_clearly_offline(tiny_engine, tiny_setup):
    plugin = tiny_engine.plugins.plugins["controlnet"]
    model_param = next(p for p in plugin.params if p.name == "model")
    assert "lllyasviel/control_v11p_sd15_canny" in plugin.choices(model_param)
    with pytest.raises(RequestError, match="could not load ControlNet 'lllyasviel/control_v11p_sd15_canny'"):
        _pixels(tiny_engine, tiny_setup[0], [_unit("lllyasviel/control_v11p_sd15_canny")])


def test_infotext_fields_name_module_model_hash_and_window(tiny_engine, tiny_setup):
    request = GenerationRequest(prompt="a red square", seed=5, steps=2, width=64, height=64, model=str(tiny_setup[0]),
                                plugin_units={"controlnet": [_unit("tiny-sd-a", end=0.5)]})
    extra = tiny_engine.generate(request).images[0].parameters["infotext_extra"]
    assert extra["ControlNet 0"].startswith("Module: canny, Model: tiny-sd-a [")
    assert extra["ControlNet 0"].endswith("Weight: 1.0, Guidance Start: 0.0, Guidance End: 0.5")
