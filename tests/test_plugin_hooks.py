"""Plugins carry their own parts: the CLI flags and the Generate tab's extra panels come from plugin hooks, so the
UI and the CLI never name a plugin, and the core imports no gradio."""

from __future__ import annotations

import dataclasses
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t2i.cli import build_parser, main
from t2i.plugins import Adapter, PluginManager
from t2i.studio import Studio

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PLUGINS_DIR = Path(__file__).resolve().parent / "example_plugins"
BUILTIN = ("lora", "controlnet", "safety_prompt", "safety_image")


def test_the_ui_and_the_cli_name_no_plugin():
    sources = sorted((ROOT / "t2i" / "ui").glob("*.py")) + [ROOT / "t2i" / "cli.py"]
    named = [f"{path.relative_to(ROOT)}: {match.group(0)}" for path in sources
             for match in re.finditer(r"""["'](%s)["']""" % "|".join(BUILTIN), path.read_text())]
    assert not named
    assert "hasattr" not in (ROOT / "t2i" / "studio.py").read_text()  # hooks are declared, not probed


@pytest.mark.slow  # a subprocess
def test_the_core_and_the_plugins_engine_parts_import_no_gradio():
    code = ("import sys, t2i.studio, t2i.cli, t2i_plugins.lora, t2i_plugins.controlnet; "
            "print('gradio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_builtin_plugins_declare_the_generate_flags(settings, capsys):
    parser = build_parser(PluginManager.discover(settings))
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--lora PATH_OR_NAME:WEIGHT" in shown and "--control TYPE[@MODEL]:IMAGE[:SCALE[:START:END]]" in shown
    assert "--lora" not in " ".join(build_parser().format_help().split())  # no plugins, no plugin flags


def test_a_folder_plugin_adds_a_cli_flag(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("T2I_PLUGIN_DIRS", str(EXAMPLE_PLUGINS_DIR))
    monkeypatch.setenv("T2I_ENTRY_POINT_PLUGINS", "0")
    monkeypatch.setenv("T2I_DATA_DIR", str(tmp_path / "data"))
    common = ["a white square on a gray background", "--seed", "3", "--steps", "4"]
    assert main(["generate", *common, "-o", str(tmp_path / "plain.png")]) == 0
    assert main(["generate", *common, "-o", str(tmp_path / "red.png"), "--tint", "1.0"]) == 0
    plain, red = (np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB"), dtype=float)
                  for name in ("plain", "red"))
    assert red[..., 0].mean() > plain[..., 0].mean() + 20  # the tint ran: the red channel rises
    assert main(["generate", *common, "-o", str(tmp_path / "bad.png"), "--tint", "5"]) == 1  # checked like any unit
    assert "amount must be from 0.0 to 2.0" in capsys.readouterr().err and not (tmp_path / "bad.png").exists()


@pytest.fixture(scope="module")
def studio(settings):
    return Studio(dataclasses.replace(settings, plugin_dirs=(EXAMPLE_PLUGINS_DIR,)))


def test_plugins_add_their_own_panels_to_the_generate_tab(studio):
    from t2i.ui import build_app

    demo = build_app(studio)
    shown = {component.get("props", {}).get("elem_id") for component in demo.config["components"]}
    assert {"lora-library", "controlnet-preview", "tint_full"} <= shown
    full = next(fn for fn in demo.fns.values() if fn.api_name == "tint_full")  # the tint panel's button
    assert [output.elem_id for output in full.outputs] == ["tint_1_enabled", "tint_1_amount"]
    assert full.fn() == (True, 2.0)


class Broken(Adapter):
    name = "broken_panel"
    max_units = 1
    ui_module = "t2i_plugin_no_such_panel"


def test_a_panel_that_fails_to_import_is_logged_and_left_out(studio, caplog):
    import gradio as gr

    from t2i.ui.plugin_panels import PanelContext, create_own_panels, create_plugin_panels

    plugins = [Broken(), *studio.plugins()]
    with caplog.at_level(logging.WARNING), gr.Blocks() as demo:
        prompt, model, width, height = gr.Textbox(), gr.Textbox(), gr.Number(), gr.Number()
        create_own_panels(studio, plugins, PanelContext(
            {"prompt": prompt, "model": model, "width": width, "height": height}, create_plugin_panels(plugins), "m"))
    assert "broken_panel" in caplog.text and "ModuleNotFoundError" in caplog.text
    shown = {component.get("props", {}).get("elem_id") for component in demo.config["components"]}
    assert {"lora-library", "controlnet-preview", "tint_full"} <= shown  # the other plugins' panels are there
