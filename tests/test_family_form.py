"""The Generate form follows the chosen model's family (t2i/ui/family_defaults.py): the page's own handlers on the
Model box, driven without a browser, on tiny folders of each family in the model folder (t2i/models/tiny)."""

from __future__ import annotations

import dataclasses

import pytest

from t2i.generation.samplers import SAMPLERS
from t2i.models.families import FAMILIES
from t2i.models.tiny import save_single_file, save_tiny_model
from t2i.request import REQUEST_FIELDS
from t2i.studio import Studio
from t2i.ui.family_defaults import model_defaults

# folder name -> (family, variant)
MODELS = {"flux1-dev": ("flux1", "dev"), "flux1-schnell": ("flux1", "schnell"), "flux2": ("flux2", ""),
          "sd3": ("sd3", ""), "zimage": ("zimage", ""), "qwenimage": ("qwenimage", ""), "sd": ("sd", "")}
ALL_SAMPLERS = list(SAMPLERS)


@pytest.fixture(scope="module")
def family_settings(settings, tmp_path_factory):
    """The test settings with a model folder holding a tiny diffusers folder of each family and a Flux.1 file."""
    folder = tmp_path_factory.mktemp("form-models")
    for name, (family, variant) in MODELS.items():
        save_tiny_model(family, folder / name, variant)
    save_single_file("sd3", folder / "sd3-single.safetensors")
    return dataclasses.replace(settings, model_dir=folder)


@pytest.fixture(scope="module")
def follow(family_settings, engine):
    """The page's handlers on the Model box: follow(event, model, sampler, hires_sampler) -> {label: update}."""
    from t2i.ui import build_app

    demo = build_app(Studio(family_settings, engine))
    model_box = next(c for c in demo.blocks.values() if getattr(c, "elem_id", None) == "model")
    handlers = {event: fn for fn in demo.fns.values() for target, event in fn.targets
                if target == model_box._id and fn.name == "follow"}
    assert set(handlers) == {"input", "change"}

    def run(event, model, sampler="Euler", hires_sampler=""):
        fn = handlers[event]
        return {c.label: update for c, update in zip(fn.outputs, fn.fn(model, sampler, hires_sampler))}
    return run


def values(updates) -> dict:
    return {label: update["value"] for label, update in updates.items() if "value" in update}


@pytest.mark.parametrize("name", list(MODELS))
def test_choosing_a_model_brings_its_familys_defaults(follow, name):
    family, variant = FAMILIES[MODELS[name][0]], MODELS[name][1]
    source = next((v for v in family.variants if v.name == variant), family)
    updates = follow("input", name, sampler="DPM++ 2M", hires_sampler="DDIM")
    shown = values(updates)
    size = 64 if family.denoiser == "unet" or family.id == "sd3" else family.native_size  # tiny configs say 64
    assert shown["Steps"] == source.steps and shown["CFG scale"] == source.cfg
    assert shown["Width"] == shown["Height"] == size
    assert updates["Sampler"]["choices"] == list(family.samplers)
    assert updates["Hires sampler"]["choices"] == ["", *family.samplers]
    # a sampler the family cannot run is replaced by one it can; one it can run is left as it is
    assert shown.get("Sampler", "DPM++ 2M") == ("DPM++ 2M" if "DPM++ 2M" in family.samplers else family.samplers[0])
    assert shown.get("Hires sampler", "DDIM") == ("DDIM" if "DDIM" in family.samplers else "")
    distilled = updates["Distilled CFG scale"]
    assert distilled["visible"] == (source.distilled_cfg is not None)
    assert distilled["value"] == (source.distilled_cfg or REQUEST_FIELDS["distilled_cfg"].default)


def test_the_registry_values_per_family(follow):
    """What users know from Forge and the model cards, read through the page."""
    dev, schnell = values(follow("input", "flux1-dev")), values(follow("input", "flux1-schnell"))
    assert (dev["Steps"], dev["CFG scale"], dev["Distilled CFG scale"], dev["Width"]) == (28, 1.0, 3.5, 1024)
    assert schnell["Steps"] == 4 and follow("input", "flux1-schnell")["Distilled CFG scale"]["visible"] is False
    assert follow("input", "zimage")["Sampler"]["choices"] == ["Euler"]
    assert values(follow("input", "qwenimage"))["Width"] == 1328
    assert values(follow("input", "sd3-single.safetensors"))["Steps"] == FAMILIES["sd3"].steps  # a single file


def test_a_model_set_by_a_recipe_changes_choices_but_not_its_values(follow):
    """PNG info and recipe links set the Model box from code: only `change` fires, and the recipe's values stay."""
    updates = follow("change", "flux1-dev", sampler="UniPC")
    assert values(updates) == {}
    assert updates["Sampler"]["choices"] == ["Euler", "UniPC"] and updates["Distilled CFG scale"]["visible"] is True


def test_back_to_the_embedded_model_restores_the_declared_defaults(follow):
    shown = values(follow("input", "embedded", sampler="UniPC"))
    for name in ("steps", "cfg", "distilled_cfg", "width", "height"):
        assert shown[REQUEST_FIELDS[name].label] == REQUEST_FIELDS[name].default
    assert "Sampler" not in shown and follow("input", "embedded")["Sampler"]["choices"] == ALL_SAMPLERS


def test_a_model_the_server_does_not_offer_leaves_the_form_alone(follow, family_settings, tmp_path):
    save_tiny_model("sd3", tmp_path / "elsewhere")  # a real folder, but outside the model folder
    assert all(update == {"__type__": "update"} for update in follow("input", str(tmp_path / "elsewhere")).values())
    assert all(update == {"__type__": "update"} for update in follow("input", "no-such-model").values())
    assert model_defaults(str(tmp_path / "elsewhere"), dataclasses.replace(family_settings, model_local_paths=True))
