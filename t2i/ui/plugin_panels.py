"""Widgets for adapter and conditioner plugins, generated from the parameters each plugin declares, and the panels
plugins build themselves.

Every parameter of every unit becomes one widget and one named API parameter,
`<plugin>_<unit>_<param>` (e.g. `lora_1_weight`), plus `<plugin>_<unit>_enabled`. A plugin with a `ui_module`
adds its own panel (the LoRA library, the ControlNet preview): that module is imported here, when the page is built.
Its `unit_choices(studio, plugin, param, model)`, if it has one, gives the units' lists for the model in the Model
box (the LoRAs of that model's family): the page offers those lists from its first load on.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from dataclasses import dataclass
from typing import Callable

import gradio as gr

from t2i.plugins import Param, Plugin
from t2i.studio import Studio

from t2i.ui.widgets import upload_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PanelContext:
    """What a plugin's own panel may wire to on the Generate tab."""

    inputs: dict[str, gr.Component]  # the form's widgets by GenerateForm field name (prompt, model, width, ...)
    unit_widgets: dict[str, gr.Component]  # every plugin unit widget by API name (see unit_key)
    concurrency_id: str  # the queue of model work, for events that run a model
    concurrency_limit: int = 1

    def unit_widgets_of(self, plugin: Plugin) -> dict[str, gr.Component]:
        """The widgets of `plugin`'s units by API name."""
        keys = [unit_key(plugin, unit, name) for unit in range(1, plugin.max_units + 1)
                for name in ("enabled", *(param.name for param in plugin.params))]
        return {key: self.unit_widgets[key] for key in keys if key in self.unit_widgets}


def unit_key(plugin: Plugin, unit: int, name: str) -> str:
    """The widget and API parameter name of one parameter of one unit (units count from 1)."""
    return f"{plugin.name}_{unit}_{name}"


def widget_for(plugin: Plugin, param: Param, key: str) -> gr.Component:
    """The Gradio input for one declared parameter, with its default, range and help text."""
    common = dict(label=param.label or param.name.replace("_", " "), info=param.help or None, elem_id=key)
    if param.type in ("float", "int") and param.minimum is not None and param.maximum is not None:
        step = param.step or (1 if param.type == "int" else (param.maximum - param.minimum) / 100)
        return gr.Slider(minimum=param.minimum, maximum=param.maximum, step=step, value=param.default, **common)
    if param.type in ("float", "int"):
        return gr.Number(value=param.default, precision=0 if param.type == "int" else None, **common)
    if param.type == "bool":
        return gr.Checkbox(value=bool(param.default), **common)
    if param.type == "choice":  # live lists (a LoRA uploaded after start) pass; the plugin validates the value
        return gr.Dropdown(choices=plugin.choices(param), value=param.default, allow_custom_value=True, **common)
    if param.type == "image":
        return upload_image(common["label"], sources=["upload", "clipboard"], elem_id=key, height=160)
    return gr.Textbox(value=param.default or "", **common)


def create_plugin_panels(plugins: list[Plugin], studio: Studio | None = None,
                         model: gr.Component | None = None) -> dict[str, gr.Component]:
    """One accordion per plugin with a row of widgets per unit; returns the widgets by API name. With the studio and
    the Model box, a plugin whose panel module has `unit_choices` lists what fits the model (on page load and on
    "Refresh lists")."""
    widgets: dict[str, gr.Component] = {}
    for plugin in plugins:
        with gr.Accordion(plugin.label or plugin.name, open=False, elem_id=f"plugin-{plugin.name}"):
            for unit in range(1, plugin.max_units + 1):
                with gr.Group(), gr.Row():
                    key = unit_key(plugin, unit, "enabled")
                    widgets[key] = gr.Checkbox(label=f"{plugin.label or plugin.name} {unit}", value=False,
                                               elem_id=key, scale=0, min_width=120)
                    for param in plugin.params:
                        key = unit_key(plugin, unit, param.name)
                        widgets[key] = widget_for(plugin, param, key)
            choice_params = [p for p in plugin.params if p.type == "choice"]
            if choice_params:
                refresh = gr.Button("Refresh lists", size="sm")
                targets = [widgets[unit_key(plugin, u, p.name)] for u in range(1, plugin.max_units + 1)
                           for p in choice_params]

                for_model = _unit_choices(plugin) if studio is not None and model is not None else None

                def refresh_choices(model_name="", plugin=plugin, choice_params=choice_params, for_model=for_model):
                    updates = [gr.update(choices=for_model(studio, plugin, p, model_name or "") if for_model
                                         else plugin.choices(p)) for p in choice_params]
                    return updates * plugin.max_units

                inputs = [model] if for_model else None
                refresh.click(refresh_choices, inputs, targets, api_name=f"refresh_{plugin.name}", queue=False)
                # and on page load: the lists as they are now (a LoRA trained or uploaded since the app started),
                # for the model selected then (with the Model box as input, on each change of model too)
                gr.on(None, refresh_choices, inputs, targets, api_visibility="private", queue=False)
    return widgets


def _unit_choices(plugin: Plugin) -> Callable | None:
    """The `unit_choices` of the plugin's panel module, or None (no panel, none declared, or it fails to import:
    create_own_panels logs that)."""
    if not plugin.ui_module:
        return None
    try:
        return getattr(_panel_module(plugin), "unit_choices", None)
    except Exception:  # a broken panel must not take the page down
        return None


def _panel_module(plugin: Plugin):
    """The plugin's `ui_module`, imported (relative to the plugin's package when it starts with a dot)."""
    return importlib.import_module(plugin.ui_module, sys.modules[type(plugin).__module__].__package__)


def units_from_values(plugins: list[Plugin], values: dict) -> dict[str, list[dict]]:
    """Enabled units per plugin from flat widget values; empty fields are left out so defaults apply."""
    units: dict[str, list[dict]] = {}
    for plugin in plugins:
        for unit in range(1, plugin.max_units + 1):
            if not values.get(unit_key(plugin, unit, "enabled")):
                continue
            entry = {}
            for param in plugin.params:
                value = values.get(unit_key(plugin, unit, param.name))
                if value is None or value == "":
                    continue
                if param.type == "int" and isinstance(value, float) and value.is_integer():
                    value = int(value)  # number widgets send 3.0 for 3
                entry[param.name] = value
            units.setdefault(plugin.name, []).append(entry)
    return units


def accept_plugin_values(fn: Callable, widgets: dict[str, gr.Component]) -> Callable:
    """Declare each widget as an optional keyword parameter of `fn` (which takes them as **kwargs).

    Gradio marks an API parameter optional only when the function declares a default for it, and a
    bare **kwargs declares none: without this, every plugin field would be a required API parameter.
    """
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    params += [inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=None) for key in widgets]
    fn.__signature__ = inspect.Signature(params)
    return fn


def create_own_panels(studio: Studio, plugins: list[Plugin], context: PanelContext) -> None:
    """Each plugin's own panel, from its `ui_module`'s `create_panel(studio, plugin, context)`.

    A panel that fails to import or build is logged and left out; the page and the plugin's units still work.
    """
    for plugin in plugins:
        if not plugin.ui_module:
            continue
        try:
            _panel_module(plugin).create_panel(studio, plugin, context)
        except Exception as exc:  # a broken panel must not take the page down
            log.warning("plugin %s: its panel (%s) failed: %s: %s", plugin.name, plugin.ui_module,
                        type(exc).__name__, exc, exc_info=True)
