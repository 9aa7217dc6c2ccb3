"""The ControlNet preview: the map each enabled unit's preprocessor makes, before generating."""

from __future__ import annotations

import gradio as gr

from t2i.plugins import Plugin
from t2i.request import RequestError
from t2i.studio import GenerateForm, Studio

from .plugin_panels import accept_plugin_values, units_from_values
from .uploads import track_uploads


def create_control_preview(studio: Studio, plugins: list[Plugin], plugin_widgets: dict, model: gr.Component,
                           width: gr.Component, height: gr.Component, concurrency_id: str,
                           concurrency_limit: int = 1) -> None:
    """A button and a gallery under the ControlNet panel (nothing when the ControlNet plugin is off)."""
    controlnet = next((p for p in plugins if p.name == "controlnet"), None)
    if controlnet is None:
        return
    widgets = {key: widget for key, widget in plugin_widgets.items() if key.startswith(f"{controlnet.name}_")}
    with gr.Accordion("ControlNet preview", open=False, elem_id="controlnet-preview"):
        button = gr.Button("Preview control maps", size="sm")
        maps = gr.Gallery(label="Control maps", type="pil", columns=3, height=200, interactive=False,
                          elem_id="control_maps")

    def preview(model="", width=0, height=0, request: gr.Request = None, **values):
        track_uploads(studio, request, values)
        form = GenerateForm(model=model, width=width, height=height,
                            plugin_units=units_from_values([controlnet], values))
        try:
            return studio.control_previews(form)
        except RequestError as exc:
            raise gr.Error(str(exc)) from exc

    button.click(accept_plugin_values(preview, widgets), inputs=[model, width, height], inputs_kwargs=widgets,
                 outputs=maps, api_name="control_preview", concurrency_id=concurrency_id,
                 concurrency_limit=concurrency_limit)
