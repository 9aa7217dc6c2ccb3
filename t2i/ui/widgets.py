"""Gradio widgets with t2i's behaviour on top of the stock ones."""

from __future__ import annotations

import gradio as gr


class UploadImage(gr.Image):
    """An image input whose undecodable uploads become a clear message instead of a generic failure."""

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Exception as exc:  # Gradio decodes uploads before our function runs
            raise gr.Error(f"{(self.label or 'image').lower()} could not be read as an image") from exc
