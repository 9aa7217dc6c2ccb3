"""ControlNets of Flux.1, SD3/3.5, Qwen-Image and Z-Image through the engine, on tiny random models and tiny random
ControlNets built offline (t2i/models/tiny/controlnets.py): the ControlNet changes the image at scale 1 and leaves it
byte-identical at scale 0, same request and seed give the same bytes, several units where the family combines them,
and a clear refusal for a ControlNet of another family, a mode the family's ControlNet pipelines do not serve, and
families diffusers has no ControlNet for.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from t2i.generation.engine import Engine
from t2i.models.tiny import save_tiny_model
from t2i.models.tiny.controlnets import save_tiny_controlnet
from t2i.recipes.infotext import png_bytes
from t2i.request import GenerationRequest, RequestError
from t2i.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ("flux1", "sd3", "qwenimage", "zimage")
SIZE = 64
# diffusers' Flux.1 and Qwen-Image ControlNet pipelines sample the control image's VAE latents with the request's
# generator before the starting noise, so their noise differs from a call without ControlNet
DRAWS_FROM_GENERATOR = ("flux1", "qwenimage")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny diffusers folders of the four ControlNet families and SDXL."""
    root = tmp_path_factory.mktemp("cn-models")
    return {family: save_tiny_model(family, root / family) for family in (*FAMILIES, "sdxl")}


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """A ControlNet library: `tiny-<family>` for each family, and a second Flux.1 one for two units."""
    folder = tmp_path_factory.mktemp("cn-library")
    for family in FAMILIES:
        save_tiny_controlnet(family, folder / f"tiny-{family}", seed=2)
    save_tiny_controlnet("flux1", folder / "tiny-flux1-b", seed=3)
    return folder


@pytest.fixture(scope="module")
def engine(tmp_path_factory, library) -> Engine:
    return Engine(Settings(data_dir=tmp_path_factory.mktemp("cn-data"), device="cpu", dtype="float32",
                           default_model="embedded", entry_point_plugins=False, safety_allow_unchecked_images=True,
                           model_cache_size=len(FAMILIES) + 2, controlnet_dirs=(library,)))


def _control_image(box=(8, 8, 40, 40)) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), "white")
    ImageDraw.Draw(image).rectangle(box, fill="black")
    return image


def _unit(model: str, **extra) -> dict:
    return {"image": _control_image(), "preprocessor": "none", "model": model, **extra}


def _generate(engine, model: Path, units=None, **fields):
    request = GenerationRequest(prompt="a red circle", seed=5, steps=2, width=SIZE, height=SIZE, model=str(model),
                                plugin_units={"controlnet": units} if units else {}, **fields)
    return engine.generate(request).images[0]


def _pixels(item) -> np.ndarray:
    return np.asarray(item.image, dtype=np.int16)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_controlnet_changes_the_image_at_scale_1_and_not_at_0(engine, models, family):
    base = _generate(engine, models[family])
    controlled = _generate(engine, models[family], [_unit(f"tiny-{family}")])
    assert np.abs(_pixels(controlled) - _pixels(base)).mean() > 2.0  # measured: 14 to 45 on these tiny models
    again = _generate(engine, models[family], [_unit(f"tiny-{family}")])
    assert png_bytes(again.image, again.parameters) == png_bytes(controlled.image, controlled.parameters)
    off = _generate(engine, models[family], [_unit(f"tiny-{family}", scale=0.0)])
    if family in DRAWS_FROM_GENERATOR:  # scale 0 still adds nothing: another control image gives the same bytes
        assert np.abs(_pixels(off) - _pixels(base)).mean() > 1.0
        other = _generate(engine, models[family], [{**_unit(f"tiny-{family}", scale=0.0),
                                                    "image": _control_image((30, 20, 60, 50))}])
        assert np.array_equal(_pixels(other), _pixels(off))
    else:
        assert np.array_equal(_pixels(off), _pixels(base))
    model = engine.models.get(str(models[family]))
    assert not hasattr(model.pipeline, "controlnet")  # the loaded pipeline is left as it was
    assert np.array_equal(_pixels(_generate(engine, models[family])), _pixels(base))


def test_flux_units_combine_with_their_own_scales_and_windows(engine, models):
    flux = models["flux1"]
    one = _pixels(_generate(engine, flux, [_unit("tiny-flux1")]))
    both = _pixels(_generate(engine, flux, [_unit("tiny-flux1"), _unit("tiny-flux1-b", scale=0.7)]))
    second_off = _pixels(_generate(engine, flux, [_unit("tiny-flux1"), _unit("tiny-flux1-b", scale=0.0)]))
    # each control image's latents are drawn from the generator (DRAWS_FROM_GENERATOR), so a second unit at scale 0
    # is compared with another second control image at scale 0, not with one unit
    other_off = _pixels(_generate(engine, flux, [_unit("tiny-flux1"), {**_unit("tiny-flux1-b", scale=0.0),
                                                                       "image": _control_image((30, 20, 60, 50))}]))
    assert np.abs(both - second_off).mean() > 1.0
    assert np.array_equal(second_off, other_off)
    # the second of two steps only lies between none (a unit at scale 0: the same noise) and all
    off = _pixels(_generate(engine, flux, [_unit("tiny-flux1", scale=0.0)]))
    late = _pixels(_generate(engine, flux, [_unit("tiny-flux1", start=0.5)]))
    assert 0 < np.abs(late - off).mean() < np.abs(one - off).mean()


def test_a_controlnet_of_another_family_is_refused_naming_both(engine, models):
    with pytest.raises(RequestError, match=r"'tiny-flux1' is a Flux\.1 .*ControlNet \(FluxControlNetModel\) and model "
                                           r".* is SDXL .*, which takes ControlNetModel ControlNets"):
        _generate(engine, models["sdxl"], [_unit("tiny-flux1")])
    with pytest.raises(RequestError, match=r"'embedded-edges' is a .*Stable Diffusion 1\.x/2\.x ControlNet "
                                           r"\(ControlNetModel\) and model .* is Flux\.1"):
        _generate(engine, models["flux1"], [_unit("embedded-edges")])
    with pytest.raises(RequestError, match=r"'tiny-sd3' is a SD3/3\.5 ControlNet .* is Qwen-Image"):
        _generate(engine, models["qwenimage"], [_unit("tiny-sd3")])
    for family in ("sdxl", "flux1", "qwenimage"):  # nothing loaded, the model as it was
        model = engine.models.get(str(models[family]))
        assert not hasattr(model.pipeline, "controlnet")
        assert "tiny-flux1" not in model.cache.get("controlnets", {}) or family == "flux1"


def test_a_controlnet_of_another_width_or_with_a_broken_file_is_refused_before_loading(models, library, tmp_path):
    import json
    import shutil

    wide = shutil.copytree(library / "tiny-flux1", tmp_path / "lib" / "wide-flux1")
    config = json.loads((wide / "config.json").read_text())
    (wide / "config.json").write_text(json.dumps({**config, "joint_attention_dim": 48}))
    broken = shutil.copytree(library / "tiny-flux1", tmp_path / "lib" / "broken-flux1")
    weights = next(broken.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    engine = Engine(Settings(data_dir=tmp_path / "data", device="cpu", dtype="float32", default_model="embedded",
                             entry_point_plugins=False, safety_allow_unchecked_images=True,
                             controlnet_dirs=(tmp_path / "lib",)))
    with pytest.raises(RequestError, match="'wide-flux1' does not fit model .*its joint_attention_dim is 48, this "
                                           "model's is 32"):
        _generate(engine, models["flux1"], [_unit("wide-flux1")])
    with pytest.raises(RequestError, match=r"could not load ControlNet 'broken-flux1'.*not a valid safetensors"):
        _generate(engine, models["flux1"], [_unit("broken-flux1")])
    assert not engine.models.get(str(models["flux1"])).cache.get("controlnets")  # nothing loaded


def test_what_a_family_cannot_do_with_a_controlnet_is_a_clear_error(engine, models):
    init = Image.new("RGB", (SIZE, SIZE), (30, 160, 60))
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (16, 16, 48, 48))
    cases = [
        ("zimage", [_unit("tiny-zimage"), _unit("tiny-zimage")], {}, "Z-Image models take one ControlNet unit"),
        ("zimage", [_unit("tiny-zimage", end=0.5)], {}, "Z-Image's ControlNet pipeline has no guidance window"),
        ("zimage", [_unit("tiny-zimage")], {"init_image": init}, "no img2img ControlNet pipeline for Z-Image"),
        ("flux1", [_unit("tiny-flux1")], {"init_image": init}, r"img2img .* Flux\.1 .*takes no true CFG"),
        ("sd3", [_unit("tiny-sd3")], {"init_image": init, "mask": mask}, "inpainting ControlNet"),
        ("qwenimage", [_unit("tiny-qwenimage")], {"init_image": init, "mask": mask}, "inpainting ControlNet"),
    ]
    for family, units, fields, message in cases:
        with pytest.raises(RequestError, match=message):
            _generate(engine, models[family], units, **fields)
    assert _generate(engine, models["zimage"]).image.size == (SIZE, SIZE)  # still serving


@pytest.mark.slow
def test_flux2_and_chroma_are_refused_for_want_of_a_diffusers_controlnet(engine, tmp_path):
    for family, label in (("flux2", "Flux.2"), ("chroma", "Chroma")):
        folder = save_tiny_model(family, tmp_path / family)
        with pytest.raises(RequestError, match=f"diffusers has no ControlNet for {label} models"):
            _generate(engine, folder, [_unit("tiny-flux1")])


@pytest.mark.slow
def test_the_cli_runs_a_flux_controlnet_unit_as_the_engine_does(engine, models, library, tmp_path):
    control, out = tmp_path / "control.png", tmp_path / "controlled.png"
    _control_image().save(control)
    env = {**os.environ, "T2I_DATA_DIR": str(tmp_path / "data"), "T2I_DEVICE": "cpu", "T2I_ENTRY_POINT_PLUGINS": "0",
           "T2I_CONTROLNET_DIRS": str(library), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "t2i", "generate", "a red circle", "--model", str(models["flux1"]),
                           "--steps", "2", "--width", "64", "--height", "64", "--seed", "5",
                           "--control", f"none@tiny-flux1:{control}:1.0", "-o", str(out)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'ControlNet 0: "Module: none, Model: tiny-flux1 [' in Image.open(out).info["parameters"]
    from_cli = np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)
    assert np.array_equal(from_cli, _pixels(_generate(engine, models["flux1"], [_unit("tiny-flux1")])))
    assert np.abs(from_cli - _pixels(_generate(engine, models["flux1"]))).mean() > 2.0
