"""PNG info: our A1111 text read by an independent parser, real A1111 text read by ours, byte-exact replay."""

import io

import pytest
from PIL import Image, PngImagePlugin

from t2i.recipes.infotext import infotext, png_bytes
from t2i.recipes.pnginfo import parse_infotext, read_png
from t2i.request import GenerationRequest, RequestError

sd_parsers = pytest.importorskip("sd_parsers")

# pasted from A1111 1.6 (old sampler names) and 1.9 (sampler + schedule type, hires resize)
A1111_V16 = """masterpiece, best quality, 1girl, solo, city street at night, neon lights, <lora:add_detail:0.7>
Negative prompt: (worst quality, low quality:1.4), EasyNegative, bad-hands-5
Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 3054958142, Size: 512x768, Model hash: 7f96a1a9ca, \
Model: anything-v5-PrtRE, Denoising strength: 0.5, Clip skip: 2, Hires upscale: 2, Hires steps: 14, \
Hires upscaler: R-ESRGAN 4x+ Anime6B, Lora hashes: "add_detail: 7c6bad76eb54", \
TI hashes: "EasyNegative: c74b4e810b03, bad-hands-5: aa7651be154c", Version: v1.6.0"""

A1111_V19 = """photo of a lighthouse on a cliff, dramatic sky, <lora:epiNoiseoffset_v2:0.6>
<lora:more_details:0.4>
Negative prompt: blurry, lowres
Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5.5, Seed: 42, Size: 768x512, \
Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.35, Hires resize: 1536x1024, \
Hires steps: 10, Hires upscaler: Latent, Lora hashes: "epiNoiseoffset_v2: d1131f7207d6, more_details: 3b8aa1d351ef", \
Emphasis: Original, Version: v1.9.4"""


def params(**over):
    base = dict(prompt="a red star", negative_prompt="blurry", styles=[], steps=20, cfg=7.0, sampler="Euler a",
                width=64, height=64, seed=123, batch_count=1, batch_size=1, model="embedded",
                model_hash="abcdef1234", mode="txt2img", final_prompt="a red star, watercolor",
                final_negative_prompt="blurry, photo", generator="t2i 0.1.0")
    return {**base, **over}


def text_png(**chunks) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


@pytest.mark.parametrize("extra", [{}, {"Lora hashes": "ink: 0123456789ab, chalk: ba9876543210"}])
def test_our_text_reads_the_same_in_sd_parsers(tmp_path, extra):
    p = params(infotext_extra=extra)
    path = tmp_path / "ours.png"
    path.write_bytes(text_png(parameters=infotext(p)))  # only the A1111 chunk, as other tools see it
    info = sd_parsers.ParserManager().parse(str(path))
    assert info.generator.name == "AUTOMATIC1111"
    sampler = info.samplers[0]
    assert (info.full_prompt, info.full_negative_prompt) == (p["final_prompt"], p["final_negative_prompt"])
    assert sampler.name == "Euler a"
    assert sampler.parameters == {"steps": "20", "cfg_scale": "7.0", "seed": "123"}
    assert (sampler.model.name, sampler.model.hash) == ("embedded", "abcdef1234")
    assert info.metadata["Size"] == "64x64" and info.metadata["Version"] == "t2i 0.1.0"
    ours = parse_infotext(infotext(p))
    assert ours.form == {"prompt": p["final_prompt"], "negative_prompt": p["final_negative_prompt"], "steps": 20,
                         "cfg": 7.0, "seed": 123, "width": 64, "height": 64, "model": "embedded",
                         "sampler": "Euler a"}
    assert ours.extra == {"Model hash": "abcdef1234", "Version": "t2i 0.1.0", **extra}


def test_values_with_commas_are_quoted_as_a1111_does():
    text = infotext(params(model="C:/models/x.safetensors", styles=["Pop Art", "Anime"],
                           infotext_extra={"ControlNet 0": "Module: canny, Weight: 1.0"}))
    last = text.splitlines()[-1]
    assert 'Model: "C:/models/x.safetensors"' in last
    assert 'ControlNet 0: "Module: canny, Weight: 1.0"' in last
    read = parse_infotext(text)
    assert read.form["model"] == "C:/models/x.safetensors"
    assert read.extra["ControlNet 0"] == "Module: canny, Weight: 1.0"
    assert "Styles: Pop Art; Anime," in last
    assert read.applied_styles == ["Pop Art", "Anime"] and "Styles" not in read.extra
    assert read.notes == ["the prompt already has its styles applied (Pop Art, Anime), so no style is selected"]


@pytest.mark.parametrize("written, names", [
    ('Styles: "Big, please; Pixel Art"', ["Big, please", "Pixel Art"]),  # a name with a comma is quoted
    ('Styles: "[\\"Watercolor\\", \\"Pixel Art\\"]"', ["Watercolor", "Pixel Art"]),  # t2i's earlier JSON list
    ('Styles: ["Watercolor"]', ["Watercolor"]),
])
def test_styles_read_back_in_both_forms(written, names):
    text = f"a red star\nSteps: 20, Sampler: Euler, CFG scale: 5.0, Seed: 1, {written}, Version: t2i"
    assert parse_infotext(text).applied_styles == names
    assert parse_infotext(infotext(params(styles=names))).applied_styles == names


def test_existing_fields_print_as_before():
    assert infotext(params(styles=["Watercolor"])).splitlines() == [
        "a red star, watercolor", "Negative prompt: blurry, photo",
        'Steps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 123, Size: 64x64, Model hash: abcdef1234, '
        'Model: embedded, Styles: Watercolor, Version: t2i 0.1.0']


def test_real_a1111_text_with_lora_and_hires():
    read = parse_infotext(A1111_V16)
    assert read.source == "a1111"
    assert read.form == {
        "prompt": "masterpiece, best quality, 1girl, solo, city street at night, neon lights, <lora:add_detail:0.7>",
        "negative_prompt": "(worst quality, low quality:1.4), EasyNegative, bad-hands-5",
        "steps": 28, "sampler": "DPM++ 2M Karras", "cfg": 7.0, "seed": 3054958142, "width": 512, "height": 768,
        "model": "anything-v5-PrtRE", "clip_skip": 2, "hires_denoise": 0.5, "hires_scale": 2.0, "hires_steps": 14,
        "hires_upscaler": "R-ESRGAN 4x+ Anime6B"}
    assert read.extra == {
        "Model hash": "7f96a1a9ca", "Lora hashes": "add_detail: 7c6bad76eb54",
        "TI hashes": "EasyNegative: c74b4e810b03, bad-hands-5: aa7651be154c", "Version": "v1.6.0"}
    assert read.notes == ["hires upscaler 'R-ESRGAN 4x+ Anime6B' is a model upscaler: it runs when a file of that "
                          "name is in the upscalers folder (T2I_UPSCALER_DIR)"]
    GenerationRequest(**read.form)  # every form key is a request field


def test_newer_a1111_sampler_and_schedule_type_and_multiline_prompt():
    read = parse_infotext(A1111_V19)
    assert read.form["prompt"] == ("photo of a lighthouse on a cliff, dramatic sky, <lora:epiNoiseoffset_v2:0.6>\n"
                                   "<lora:more_details:0.4>")
    assert (read.form["sampler"], read.form["cfg"], read.form["width"], read.form["height"]) == (
        "DPM++ 2M Karras", 5.5, 768, 512)
    assert read.extra["Lora hashes"] == "epiNoiseoffset_v2: d1131f7207d6, more_details: 3b8aa1d351ef"
    assert (read.form["hires_width"], read.form["hires_height"], read.form["hires_denoise"]) == (1536, 1024, 0.35)
    assert "strength" not in read.form


def test_unknown_sampler_is_reported_not_replaced():
    read = parse_infotext("a cat\nSteps: 20, Sampler: DPM++ 3M SDE, CFG scale: 7, Seed: 1, Size: 512x512")
    assert "sampler" not in read.form
    assert read.notes == ["sampler 'DPM++ 3M SDE' is not available here; the form keeps its sampler"]


def test_img2img_strength_without_hires():
    read = parse_infotext("a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, "
                          "Denoising strength: 0.6")
    assert read.form["strength"] == 0.6


def test_prompt_only_text_and_bad_values():
    assert parse_infotext("just a prompt\nNegative prompt: ugly").form == {
        "prompt": "just a prompt", "negative_prompt": "ugly"}
    with pytest.raises(RequestError, match="Steps must be a number"):
        parse_infotext("x\nSteps: many, Sampler: Euler, CFG scale: 7, Seed: 1")
    with pytest.raises(RequestError, match="Size must look like"):
        parse_infotext("x\nSteps: 2, Sampler: Euler, CFG scale: 7, Size: big")
    with pytest.raises(RequestError, match="empty"):
        parse_infotext("  ")


def test_png_errors(tmp_path):
    with pytest.raises(RequestError, match="no generation parameters"):
        read_png(text_png())
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8)).save(jpeg, format="JPEG")
    with pytest.raises(RequestError, match="JPEG image"):
        read_png(jpeg.getvalue())
    with pytest.raises(RequestError, match="could not be read"):
        read_png(b"not an image at all")
    with pytest.raises(RequestError, match="not valid JSON"):
        read_png(text_png(t2i_recipe="{broken"))


def test_a1111_png_falls_back_to_parameters_text():
    read = read_png(text_png(parameters=A1111_V16))
    assert read.source == "a1111" and read.form["seed"] == 3054958142


def test_replaying_a_png_recipe_gives_identical_bytes(engine):
    request = GenerationRequest(prompt="a small red star in the top-left corner on a blue background",
                                negative_prompt="green", styles=("Watercolor",), steps=8, seed=77, sampler="Euler a")
    first = engine.generate(request).images[0]
    original = png_bytes(first.image, first.parameters)
    read = read_png(original)
    assert read.source == "t2i" and read.form["styles"] == ["Watercolor"] and read.form["seed"] == 77
    replay = engine.generate(GenerationRequest(**read.form)).images[0]
    assert png_bytes(replay.image, replay.parameters) == original
    different = engine.generate(GenerationRequest(**{**read.form, "seed": 78})).images[0]
    assert different.image.tobytes() != first.image.tobytes()  # the comparison can fail
