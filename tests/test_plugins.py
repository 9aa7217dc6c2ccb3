"""The plugin system: a third-party plugin written in ~30 lines, discovery, broken plugins, validation."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from t2i.generation.engine import Engine
from t2i.plugins import Adapter, Param, PluginManager
from t2i.request import GenerationRequest, RequestError

EXAMPLE_PLUGIN = (Path(__file__).parent / "example_plugins" / "tint.py").read_text()  # also README's example


@pytest.fixture
def plugin_dir(tmp_path):
    (tmp_path / "tint.py").write_text(EXAMPLE_PLUGIN)
    (tmp_path / "broken.py").write_text("import a_module_that_does_not_exist\n")
    (tmp_path / "_private.py").write_text("raise SystemExit('never imported')\n")
    return tmp_path


def test_folder_plugin_loads_and_broken_one_is_skipped(settings, plugin_dir):
    manager = PluginManager.discover(dataclasses.replace(settings, plugin_dirs=(plugin_dir,)))
    assert "tint" in manager.plugins
    assert any("broken" in p and "ModuleNotFoundError" in p for p in manager.problems)


def test_example_plugin_changes_the_image_and_undoes_itself(settings, plugin_dir):
    engine = Engine(dataclasses.replace(settings, plugin_dirs=(plugin_dir,)))
    plain = GenerationRequest(prompt="a white square on a gray background", seed=3, steps=8)
    tinted = dataclasses.replace(plain, plugin_units={"tint": [{"amount": 1.0}]})
    before = np.asarray(engine.generate(plain).images[0].image, dtype=float)
    red = np.asarray(engine.generate(tinted).images[0].image, dtype=float)
    after = np.asarray(engine.generate(plain).images[0].image, dtype=float)
    assert red[..., 0].mean() > before[..., 0].mean() + 20  # measured: the red channel rises
    assert np.array_equal(before, after)  # and nothing leaks into the next request
    assert engine.generate(tinted).images[0].parameters["plugin_units"] == {"tint": [{"amount": 1.0}]}


@pytest.mark.parametrize("units, message", [
    ({"nope": [{}]}, "unknown plugin 'nope'"),
    ({"tint": [{"amount": 5.0}]}, "amount must be from 0.0 to 2.0"),
    ({"tint": [{"amount": "lots"}]}, "amount must be a float"),
    ({"tint": [{"volume": 1.0}]}, "unknown parameter 'volume'"),
    ({"tint": [{}, {}]}, "at most 1 units"),
    ({"tint": {"amount": 1.0}}, "units must be a list"),
])
def test_bad_units_are_refused_with_a_clear_message(settings, plugin_dir, units, message):
    manager = PluginManager.discover(dataclasses.replace(settings, plugin_dirs=(plugin_dir,)))
    with pytest.raises(RequestError, match=message):
        manager.units_for_request(units)


def test_defaults_fill_parameters_left_out(settings, plugin_dir):
    manager = PluginManager.discover(dataclasses.replace(settings, plugin_dirs=(plugin_dir,)))
    assert manager.units_for_request({"tint": [{}]}) == {"tint": [{"amount": 0.5}]}


def _install_entry_point(site, name: str, target: str) -> None:
    """A real installed distribution (dist-info with entry_points.txt) on a sys.path folder."""
    info = site / f"{name}_dist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[t2i.plugins]\n{name} = {target}\n")


def test_entry_point_plugins_load_but_cannot_replace_a_builtin(settings, plugin_dir, tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "thirdparty_tint.py").write_text(EXAMPLE_PLUGIN.replace('name = "tint"', 'name = "tint2"'))
    (site / "impostor.py").write_text(EXAMPLE_PLUGIN)  # claims the name "tint" of a folder plugin
    _install_entry_point(site, "tint2", "thirdparty_tint:register")
    _install_entry_point(site, "impostor", "impostor:register")
    monkeypatch.syspath_prepend(str(site))
    manager = PluginManager.discover(dataclasses.replace(settings, plugin_dirs=(plugin_dir,), entry_point_plugins=True))
    assert "tint2" in manager.plugins
    assert type(manager.plugins["tint"]).__module__.startswith("t2i_plugin_")  # the folder plugin kept its name
    assert any("already taken by a built-in" in p for p in manager.problems)
    sys.modules.pop("thirdparty_tint", None)
    sys.modules.pop("impostor", None)


def test_builtin_plugins_come_from_entry_points_and_installed_ones_only_when_enabled(settings, tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "fake_lora.py").write_text(EXAMPLE_PLUGIN.replace('name = "tint"', 'name = "lora"'))
    _install_entry_point(site, "fake_lora", "fake_lora:register")
    monkeypatch.syspath_prepend(str(site))
    quiet = PluginManager.discover(settings)  # the test settings: installed plugins off
    assert type(quiet.plugins["lora"]).__module__.startswith("t2i_plugins.lora")
    assert quiet.problems == [] and "fake_lora" not in sys.modules
    loud = PluginManager.discover(dataclasses.replace(settings, entry_point_plugins=True))
    assert type(loud.plugins["lora"]).__module__.startswith("t2i_plugins.lora")  # the built-in kept its name
    assert any("'lora' is already taken by a built-in" in p for p in loud.problems)
    sys.modules.pop("fake_lora", None)


def test_an_adapter_that_raises_mid_run_is_undone_and_the_engine_keeps_serving(settings, plugin_dir):
    class Exploding(Adapter):
        name = "exploding"
        max_units = 1
        params = (Param("when", "text", default="now"),)

        @contextlib.contextmanager
        def activate(self, model, units):
            raise RuntimeError("adapter failed")
            yield

    engine = Engine(settings, plugins=PluginManager([Exploding()]))
    with pytest.raises(RuntimeError, match="adapter failed"):
        engine.generate(GenerationRequest(prompt="a red circle", seed=1, steps=2, plugin_units={"exploding": [{}]}))
    assert engine.generate(GenerationRequest(prompt="a red circle", seed=1, steps=2)).images[0].image is not None
