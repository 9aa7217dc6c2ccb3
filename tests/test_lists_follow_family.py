"""Lists that follow a model's family, through the functions the page calls: the Train tab's base-model box offers
the models whose family can train (an SDXL folder, not an SD3 one; a folder dropped in later after Refresh), and
choosing one sets "LoRA for" and the preset's boxes; a LoRA unit's list on page load already holds only the LoRAs
for the model selected then."""

from __future__ import annotations

import dataclasses
import shutil

import gradio as gr
import pytest
import torch
from safetensors.torch import save_file

from t2i.models.tiny import save_tiny_model
from t2i.studio import Studio
from t2i.train.config import DEFAULT_PRESET, preset_config
from t2i.train.family_training import FAMILY_KEY
from t2i.ui.plugin_panels import PanelContext, create_own_panels, create_plugin_panels
from t2i.ui.train_tab import create_train_tab, lora_family, trainable_models


@pytest.fixture(scope="module")
def studio(settings, tmp_path_factory):
    root = tmp_path_factory.mktemp("family-lists")
    models, loras = root / "models", root / "loras"
    save_tiny_model("sdxl", models / "xl")
    save_tiny_model("sd3", models / "three")
    loras.mkdir()
    for name, family in (("for_sd", "sd"), ("for_xl", "sdxl"), ("untagged", None)):
        save_file({"unet.x.lora_A.weight": torch.zeros(1)}, loras / f"{name}.safetensors",
                  metadata={FAMILY_KEY: family} if family else None)
    return Studio(dataclasses.replace(settings, model_dir=models, lora_dir=loras))


def _event(demo: gr.Blocks, trigger: str, source: gr.Component | None = None, output: str = ""):
    """The function of the page's event fired by `trigger` (on `source`, or the page's load) that writes `output`."""
    for fn in demo.fns.values():
        fired = any(name == trigger and (source is None or block == source._id) for block, name in fn.targets)
        if fired and (not output or output in [block.elem_id for block in fn.outputs]):
            return fn.fn
    raise AssertionError(f"no {trigger} event writing {output!r}")


def _choices(update) -> list[str]:
    return [value for _, value in update["choices"]] if update["choices"] and isinstance(update["choices"][0], tuple) \
        else list(update["choices"])


def test_the_base_model_box_offers_the_models_that_train_and_sets_their_family(studio):
    offered = dict((value, label) for label, value in trainable_models(studio))
    assert set(offered) == {"embedded", "xl"}  # not the SD3 folder: SD3 LoRAs cannot train
    assert offered["xl"] == "xl (SDXL (Pony, Illustrious))" and "Stable Diffusion" in offered["embedded"]
    assert lora_family("xl", studio) == "sdxl" and lora_family("embedded", studio) == "sd"
    assert lora_family("three", studio) == "" and lora_family("someone/not-here", studio) == ""

    with gr.Blocks() as demo:
        create_train_tab(studio)
    base_model = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "train_base_model")
    family = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "train_family")
    assert "SDXL" in base_model.info and "Flux.1" in base_model.info
    assert _event(demo, "change", base_model, "train_family")("xl") == "sdxl"
    # the family's change refills the Advanced boxes with the preset as it trains that family
    fill = _event(demo, "change", family, "train_learning_rate")
    flux = preset_config(DEFAULT_PRESET, "flux1")
    assert fill(DEFAULT_PRESET, "flux1")[:2] == [flux.learning_rate, flux.text_encoder_lr]

    shutil.copytree(studio.settings.model_dir / "xl", studio.settings.model_dir / "dropped_in")
    try:
        refresh = _event(demo, "click", output="train_base_model")
        assert "dropped_in" in _choices(refresh()) and "three" not in _choices(refresh())
        assert _choices(_event(demo, "load", output="train_base_model")()) == _choices(refresh())
    finally:
        shutil.rmtree(studio.settings.model_dir / "dropped_in")


def _generate_panels(studio):
    """The plugins' Generate-tab panels on a page whose Model box holds the tiny SDXL model: (page, Model box,
    plugins)."""
    plugins = studio.plugins()
    with gr.Blocks() as demo:
        prompt, model, width, height = gr.Textbox(), gr.Textbox(value="xl"), gr.Number(), gr.Number()
        create_own_panels(studio, plugins, PanelContext(
            {"prompt": prompt, "model": model, "width": width, "height": height},
            create_plugin_panels(plugins, studio, model), "m"))
    return demo, model, plugins


def test_lora_unit_lists_on_page_load_hold_the_loras_for_the_selected_model(studio):
    demo, model, plugins = _generate_panels(studio)
    on_load = _event(demo, "load", output="lora_1_name")
    units = on_load("xl")
    assert {tuple(_choices(update)) for update in units} == {("for_xl", "untagged")}  # every unit, this family's
    assert _choices(on_load("embedded")[0]) == ["for_sd", "untagged"]
    assert _choices(_event(demo, "click", output="lora_1_name")("xl")[0]) == ["for_xl", "untagged"]  # Refresh lists


def test_deleting_an_upload_leaves_the_library_list_holding_the_loras_for_the_selected_model(studio):
    demo, model, plugins = _generate_panels(studio)
    loras = studio.settings.lora_dir
    shutil.copyfile(loras / "for_xl.safetensors", loras / "mine.safetensors")  # as "Add to library" leaves it
    library = next(p for p in plugins if p.name == "lora").library
    delete = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "lora_delete")
    event = next(fn for fn in demo.fns.values() if (delete._id, "click") in fn.targets)
    uploads = {"mine": library.resolve("mine").sha256}

    def sent(block):  # what the page sends for each of the event's inputs (the Model box only if it reads it)
        if block is model:
            return "xl"
        return "mine" if getattr(block, "elem_id", None) == "lora_chosen" else uploads

    listed, _, status, left, _ = event.fn(*map(sent, event.inputs))
    assert status == "Deleted **mine**." and left == {} and not (loras / "mine.safetensors").exists()
    assert _choices(listed) == ["for_xl", "untagged"] and listed["value"] is None  # as on load, Refresh and upload
