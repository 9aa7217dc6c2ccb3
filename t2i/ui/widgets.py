"""Gradio widgets with t2i's behaviour on top of the stock ones."""

from __future__ import annotations

import gradio as gr
from PIL import Image


def upload_image(label: str, **kwargs) -> gr.Image:
    """An image input whose undecodable uploads become a clear message instead of a generic failure.

    It stays a stock `gr.Image`: Gradio 6 treats any subclass defined outside gradio as a custom component and
    asks the browser to fetch a frontend build that does not exist, so the widget would not render. The clear
    message comes from wrapping this one instance's `preprocess` instead.
    """
    # no image_mode: Gradio then reads only the header and hands over the file; with a mode it fully decodes and
    # converts any non-RGB upload before the studio's pixel cap is checked (a small PNG can claim 12000x12000 pixels)
    image = gr.Image(label=label, type="filepath", image_mode=None, value=None, **kwargs)
    stock_preprocess = image.preprocess
    what = label.lower()

    def preprocess(payload):
        try:
            return stock_preprocess(payload)
        except Image.DecompressionBombError as exc:  # Gradio reads the header before our function runs
            raise gr.Error(f"{what} is too large: {exc}") from exc
        except Exception as exc:  # Gradio opens uploads before our function runs
            raise gr.Error(f"{what} could not be read as an image") from exc

    image.preprocess = preprocess
    return image
