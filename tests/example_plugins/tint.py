"""The README's example plugin: an adapter that tints images red by shifting the VAE decoder's output bias.

It shows every part a plugin has: a name, a kind, parameters as data, and a hook that undoes itself.
"""

import contextlib
import torch
from t2i.plugins import Adapter, Param


class Tint(Adapter):
    """Shifts the decoded colours toward red: a toy adapter to show how plugins work."""

    name = "tint"
    label = "Tint"
    max_units = 1
    params = (Param("amount", "float", default=0.5, minimum=0.0, maximum=2.0, step=0.1, label="Amount"),)

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


def register(settings):
    return [Tint()]
