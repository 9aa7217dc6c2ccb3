"""Hires fix on the embedded model: the second pass doubles the size and keeps the scene (measured by the
analyzer), replays to the same bytes from our recipe and from A1111 text, and refuses what it cannot do."""

import dataclasses

import pytest

from t2i.cli import _engine_settings, _request_from_flags, build_parser
from t2i.eval.analyzer import analyze
from t2i.generation.hires import target_size
from t2i.plugins import PluginManager
from t2i.recipes.infotext import infotext, png_bytes
from t2i.recipes.pnginfo import parse_infotext, read_png
from t2i.request import GenerationRequest, RequestError

PROMPT = "a large red circle in the center on a blue background"


def run(engine, **fields):
    return engine.generate(GenerationRequest(**{"prompt": PROMPT, "steps": 12, "seed": 3, **fields})).images[0]


def _scene(image):
    analysis = analyze(image)
    return analysis.background, [(o.colour, o.shape, o.position) for o in analysis.objects]


def test_target_size_from_scale_or_resize_within_limits(settings):
    def size(**fields):
        return target_size(GenerationRequest(prompt="x", **fields), 64, 48, settings)

    assert size(hires_scale=2.0) == (128, 96)
    assert size(hires_scale=1.5) == (96, 72)
    assert size(hires_width=128) == (128, 96)  # the other side from the aspect ratio
    assert size(hires_width=256, hires_height=128) == (256, 128)
    small = dataclasses.replace(settings, max_side=96)
    with pytest.raises(RequestError, match=r"hires fix would make 128x96 from 64x48.*T2I_MAX_SIDE"):
        target_size(GenerationRequest(prompt="x", hires_scale=2.0), 64, 48, small)


@pytest.mark.parametrize("fields, message", [
    ({"hires_scale": 5.0}, "hires_scale must be from 1"),
    ({"hires_width": 100}, "hires_width must be 0 or a multiple of 8"),
    ({"hires_denoise": 0}, "hires_denoise must be more than 0"),
    ({"hires_sampler": "Heun++"}, "unknown hires sampler"),
])
def test_bad_hires_fields_are_refused(settings, fields, message):
    with pytest.raises(RequestError, match=message):
        GenerationRequest(prompt="x", **fields).validate(settings)


def test_a1111_hires_fields_written_and_read_back():
    params = {"prompt": "a cat", "steps": 20, "sampler": "Euler", "cfg": 7.0, "seed": 1, "width": 64, "height": 64,
              "model": "embedded", "hires_scale": 2.0, "hires_width": 0, "hires_height": 0, "hires_steps": 8,
              "hires_denoise": 0.45, "hires_upscaler": "Latent (nearest)", "hires_prompt": "a sharp cat",
              "hires_negative_prompt": "", "hires_sampler": "DPM++ 2M Karras", "clip_skip": 2}
    text = infotext(params)
    assert ("Clip skip: 2, Denoising strength: 0.45, Hires upscale: 2, Hires steps: 8, Hires upscaler: Latent "
            "(nearest), Hires prompt: a sharp cat, Hires sampler: DPM++ 2M Karras") in text
    form = parse_infotext(text).form
    assert {name: form[name] for name in ("hires_scale", "hires_steps", "hires_denoise", "hires_upscaler",
                                          "hires_prompt", "hires_sampler", "clip_skip")} == {
        "hires_scale": 2.0, "hires_steps": 8, "hires_denoise": 0.45, "hires_upscaler": "Latent (nearest)",
        "hires_prompt": "a sharp cat", "hires_sampler": "DPM++ 2M Karras", "clip_skip": 2}
    assert "strength" not in form  # with hires fields, Denoising strength is the second pass's


def test_hires_size_beyond_the_limits_is_refused_before_sampling(engine):
    with pytest.raises(RequestError, match="hires fix would make 4096x4096"):
        run(engine, width=1024, height=1024, hires_scale=4.0, steps=2)


@pytest.mark.slow
def test_hires_doubles_the_size_and_keeps_layout_and_colours(engine):
    base = run(engine)
    background, objects = _scene(base.image)
    assert base.image.size == (64, 64) and (background, objects[:1]) == ("blue", [("red", "circle", "center")])
    made = {}
    for upscaler in ("Latent", "Lanczos", "shapes-compact-2x"):
        made[upscaler] = hires = run(engine, hires_scale=2.0, hires_upscaler=upscaler)
        assert hires.image.size == (128, 128)
        assert _scene(hires.image)[0] == background and _scene(hires.image)[1][:1] == objects[:1], upscaler
        assert hires.parameters["width"] == 64 and hires.parameters["hires_upscaler"] == upscaler
    assert made["Lanczos"].image.tobytes() != made["shapes-compact-2x"].image.tobytes()
    again = run(engine, hires_scale=2.0, hires_upscaler="shapes-compact-2x")
    assert png_bytes(again.image, again.parameters) == png_bytes(made["shapes-compact-2x"].image,
                                                                 made["shapes-compact-2x"].parameters)


@pytest.mark.slow
def test_a1111_infotext_with_hires_fields_replays_to_the_same_bytes(engine):
    text = (f"{PROMPT}\nNegative prompt: green\nSteps: 10, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5, "
            "Seed: 11, Size: 64x64, Model: embedded, Denoising strength: 0.55, Clip skip: 2, Hires resize: 96x0, "
            "Hires steps: 6, Hires upscaler: Latent, Version: v1.10.1")
    read = parse_infotext(text)
    assert read.notes == []
    first = engine.generate(GenerationRequest(**read.form)).images[0]
    assert first.image.size == (96, 96)
    blob = png_bytes(first.image, first.parameters)
    replayed_text = read_png(blob).text  # our own A1111 text, read back as A1111 text
    again = engine.generate(GenerationRequest(**parse_infotext(replayed_text).form)).images[0]
    assert png_bytes(again.image, again.parameters) == blob
    assert "Hires resize: 96x0" in replayed_text and "Denoising strength: 0.55" in replayed_text



def test_cli_flags_fill_the_request_and_the_embeddings_folder(tmp_path):
    args = build_parser(PluginManager()).parse_args([
        "generate", PROMPT, "-o", "x.png", "--hires-scale", "2", "--hires-steps", "6", "--hires-denoise", "0.45",
        "--hires-upscaler", "shapes-compact-2x", "--clip-skip", "2", "--vae", "warm.safetensors",
        "--embeddings-dir", str(tmp_path)])
    request = _request_from_flags(args)
    assert (request.hires_scale, request.hires_steps, request.hires_denoise, request.hires_upscaler,
            request.clip_skip, request.vae) == (2.0, 6, 0.45, "shapes-compact-2x", 2, "warm.safetensors")
    assert _engine_settings(args).embeddings_dir == tmp_path
