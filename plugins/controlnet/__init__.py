"""Built-in ControlNet plugin: control images through controlnet_aux preprocessors and ControlNet models."""

from .conditioner import ControlNet


def register(settings):
    """The plugin's one conditioner."""
    return [ControlNet(settings)]
