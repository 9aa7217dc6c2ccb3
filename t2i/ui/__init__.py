"""The Gradio front end: the only package besides app.py that imports gradio (and, through it, the plugins' own
panel modules, e.g. plugins/lora/ui.py)."""

from __future__ import annotations

from typing import Callable

import gradio as gr

from t2i.studio import Studio

from t2i.ui.generate_tab import create_generate_tab
from t2i.ui.grid_tab import create_grid_tab
from t2i.ui.history_tab import create_history_tab, wire_history
from t2i.ui.recipe_tab import create_recipe_tab, wire_recipe_links
from t2i.ui.styles_tab import create_styles_tab, wire_style_sessions
from t2i.ui.train_tab import create_train_tab
from t2i.ui.uploads import upload_sweep, wire_upload_sessions


# small models make small images: show them enlarged with sharp pixels, not smeared
CSS = ("#gallery img, #preview img { image-rendering: pixelated; }"
       # a single result is shown whole, not cropped to fill the gallery's box
       " #gallery img { object-fit: contain !important; }"
       " #gallery .thumbnail-lg { width: auto !important; height: 100% !important; aspect-ratio: 1 / 1; }"
       # the enlarged image is drawn over the thumbnail grid with a translucent backdrop: hide the grid under it
       " #gallery .preview ~ .grid-wrap { visibility: hidden; }"
       # the live preview fills its box (a 64x64 preview would otherwise be a stamp in the middle)
       " #preview img { width: 100%; height: 100%; object-fit: contain; }")


def build_app(studio: Studio, gpu: Callable = lambda fn: fn) -> gr.Blocks:
    """The whole page, with the queue configured from settings."""
    with gr.Blocks(title="t2i studio", analytics_enabled=False, delete_cache=upload_sweep(studio.settings)) as demo:
        gr.Markdown("## t2i studio\nText to image on the embedded shapes-world model or any Stable Diffusion model.")
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate"):
                form = create_generate_tab(studio, gpu)
            with gr.Tab("X/Y/Z plot", id="xyz_plot"):
                grid_gallery = create_grid_tab(studio, form, gpu)
            with gr.Tab("History", id="history"):
                history = create_history_tab(studio, form, tabs)
            with gr.Tab("PNG info", id="png_info"):
                create_recipe_tab(studio, form, tabs)
            with gr.Tab("Styles", id="styles"):
                create_styles_tab(studio, form)
            with gr.Tab("Train", id="train"):
                create_train_tab(studio)
        wire_recipe_links(demo, studio, form)
        wire_style_sessions(demo, studio)
        wire_upload_sessions(demo, studio)
        wire_history(demo, studio, history, [form["gallery"], grid_gallery])
    demo.queue(max_size=studio.settings.queue_size, default_concurrency_limit=1)
    return demo
