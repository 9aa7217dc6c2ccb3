"""The ControlNet plugin's own panel: the map each enabled unit's preprocessor makes, before generating.
Only t2i.ui imports it."""

from __future__ import annotations

import gradio as gr

from t2i.request import RequestError
from t2i.studio import GenerateForm, Studio
from t2i.ui.plugin_panels import PanelContext, accept_plugin_values, units_from_values
from t2i.ui.uploads import track_uploads

from .conditioner import ControlNet


def create_panel(studio: Studio, controlnet: ControlNet, context: PanelContext) -> None:
    """A button and a gallery of the control maps, run in the model-work queue."""
    widgets = context.unit_widgets_of(controlnet)
    model, width, height = (context.inputs[name] for name in ("model", "width", "height"))
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
                 outputs=maps, api_name="control_preview", concurrency_id=context.concurrency_id,
                 concurrency_limit=context.concurrency_limit)
