"""The README's example plugin: an adapter that tints images red by shifting the VAE decoder's output bias.

It shows every part a plugin has: a name, a kind, parameters as data, a hook that undoes itself, a command-line
flag and a panel of its own on the Generate tab.
"""

import contextlib
import torch
from t2i.plugins import Adapter, CliFlag, Param


class Tint(Adapter):
    """Shifts the decoded colours toward red: a toy adapter to show how plugins work."""

    name = "tint"
    label = "Tint"
    max_units = 1
    params = (Param("amount", "float", default=0.5, minimum=0.0, maximum=2.0, step=0.1, label="Amount"),)
    cli_flag = CliFlag("--tint", "AMOUNT", "tint the image red by AMOUNT (0 to 2)")
    ui_module = __name__  # this file's create_panel; a plugin package would name its module, e.g. ".ui"

    @contextlib.contextmanager
    def activate(self, model, units):
        bias = model.pipeline.vae.decoder.conv_out.bias
        saved = bias.detach().clone()
        with torch.no_grad():
            bias[0] += units[0]["amount"]  # channel 0 is red
        try:
            yield
        finally:
            with torch.no_grad():
                bias.copy_(saved)

    def unit_from_cli(self, text):
        return {"amount": float(text)}


def create_panel(studio, plugin, context):
    """A button that switches the Generate tab's tint row on at full strength."""
    import gradio as gr  # here, not at the top: only the page imports gradio, never the engine

    widgets = context.unit_widgets_of(plugin)
    button = gr.Button("Full tint", size="sm", elem_id="tint_full")
    button.click(lambda: (True, 2.0), None, [widgets["tint_1_enabled"], widgets["tint_1_amount"]],
                 api_name="tint_full", queue=False)


def register(settings):
    return [Tint()]
