"""The Styles tab: each preset's preview thumbnail (scripts/style_previews.py) with its prompt template."""

from __future__ import annotations

import gradio as gr

from t2i.studio import Studio
from t2i.styles import preview_path


def create_styles_tab(studio: Studio) -> None:
    """Build the tab inside the current Blocks: a gallery of the presets that have a preview."""
    library = studio.engine.styles
    items = [(str(preview_path(name)), f"{name}: {library.get(name).prompt}")
             for name in library.names() if preview_path(name).exists()]
    gr.Markdown("Previews are made with the embedded shapes-world model, so they show how each preset's words "
                "steer that small model, not what the preset gives on a general model.")
    gr.Gallery(value=items, label="Style previews", columns=8, interactive=False, elem_id="style_previews",
               buttons=["fullscreen"])
