"""The brush canvas of the img2img / inpainting panel: paint on the init image, and the strokes become the mask.

The editor shows the init image as its background. Whatever is painted on its layer (any colour) becomes white
(repaint) in the Mask box, the rest black; the Mask box stays the one way masks reach a request, as a file does
through the API and the CLI.
"""

from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image


def mask_from_editor(value: dict | None) -> Image.Image | None:
    """An "L" mask (255 where any layer was painted) from an ImageEditor value of numpy arrays, or None when
    nothing was painted."""
    layers = [np.asarray(layer) for layer in (value or {}).get("layers") or [] if layer is not None]
    painted = [layer[..., 3] > 0 for layer in layers if layer.ndim == 3 and layer.shape[2] == 4]
    if not painted or not np.any(painted):
        return None
    return Image.fromarray(np.logical_or.reduce(painted).astype(np.uint8) * 255, mode="L")


def create_brush_canvas(init_image: gr.Image, mask: gr.Image) -> gr.ImageEditor:
    """A brush editor over `init_image` whose strokes fill `mask`; build it inside the current layout."""
    editor = gr.ImageEditor(
        label="Paint the area to repaint", type="numpy", image_mode="RGBA", sources=(), format="png",
        transforms=(), layers=gr.LayerOptions(allow_additional_layers=False), elem_id="mask_canvas",
        brush=gr.Brush(default_size=8, colors=["rgb(255, 255, 255)"], color_mode="fixed"), canvas_size=(512, 512),
        value=None)

    def show_init(path: str | None):
        """The init image as the canvas's background (strokes start afresh)."""
        return None if path is None else {"background": path, "layers": [], "composite": path}

    init_image.change(show_init, init_image, editor, queue=False, api_visibility="private")
    editor.change(mask_from_editor, editor, mask, queue=False, api_visibility="private")
    return editor
