"""Gradio widgets with t2i's behaviour on top of the stock ones."""

from __future__ import annotations

import gradio as gr
from PIL import Image


class UploadImage(gr.Image):
    """An image input whose undecodable uploads become a clear message instead of a generic failure."""

    def __init__(self, *args, **kwargs):
        # no mode: Gradio then hands over the file undecoded; otherwise it fully decodes and converts any non-RGB
        # upload before the studio's pixel cap is checked (a small PNG can claim 12000x12000 pixels)
        kwargs.setdefault("image_mode", None)
        super().__init__(*args, **kwargs)

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Image.DecompressionBombError as exc:  # Gradio reads the header before our function runs
            raise gr.Error(f"{(self.label or 'image').lower()} is too large: {exc}") from exc
        except Exception as exc:  # Gradio decodes uploads before our function runs
            raise gr.Error(f"{(self.label or 'image').lower()} could not be read as an image") from exc
