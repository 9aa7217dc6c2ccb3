"""The LoRA library panel: upload a LoRA, refresh the list, see a LoRA's trigger words and put it in the prompt."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from t2i.plugins import Plugin
from t2i.request import RequestError
from t2i.studio import Studio

from .uploads import track_uploads


def create_lora_library(studio: Studio, plugins: list[Plugin], prompt: gr.Textbox) -> None:
    """Build the panel inside the current Blocks (nothing when the LoRA plugin is switched off)."""
    lora = next((p for p in plugins if p.name == "lora"), None)
    if lora is None:
        return
    with gr.Accordion("LoRA library", open=False, elem_id="lora-library"):
        with gr.Row():
            chosen = gr.Dropdown(label="LoRA", choices=lora.library.names(), value=None, elem_id="lora_chosen", scale=3)
            refresh = gr.Button("Refresh", size="sm", scale=0, min_width=80)
        words = gr.Textbox(label="Trigger words", value="", interactive=False, elem_id="lora_trigger_words")
        with gr.Row():
            weight = gr.Slider(label="Weight", minimum=-2, maximum=2, step=0.05, value=1.0, scale=3)
            insert = gr.Button("Add to prompt", size="sm", scale=1, min_width=120)
        with gr.Row():
            upload = gr.File(label="Upload a .safetensors LoRA", file_types=[".safetensors"], type="filepath",
                             value=None, scale=3)
            name = gr.Textbox(label="Save as", value="", placeholder="name in the library (default: file name)", scale=2)
        add = gr.Button("Add to library", size="sm")
        status = gr.Markdown("")

    def refreshed(current=None):
        names = lora.library.names()
        return gr.update(choices=names, value=current if current in names else None)

    def trigger_words(name=None) -> str:
        return ", ".join(_checked(lambda: lora.trigger_words(name))) if name else ""

    def add_to_prompt(text="", name=None, weight=1.0) -> str:
        if not name:
            raise gr.Error("choose a LoRA first")
        words = _checked(lambda: lora.trigger_words(name))
        return " ".join(part for part in (text.strip(), f"<lora:{name}:{weight:g}>", ", ".join(words)) if part)

    def add_to_library(path=None, name="", request: gr.Request = None):
        track_uploads(studio, request, path)
        if not path:
            raise gr.Error("choose a .safetensors file to upload")
        saved = _checked(lambda: lora.library.add(Path(path), name.strip() or Path(path).stem))
        return (gr.update(choices=lora.library.names(), value=saved.name), ", ".join(saved.trigger_words),
                f"Added **{saved.name}** (hash {saved.short_hash}).")

    refresh.click(refreshed, chosen, chosen, api_name="lora_refresh", queue=False)
    chosen.change(trigger_words, chosen, words, api_name="lora_trigger_words", queue=False)
    insert.click(add_to_prompt, [prompt, chosen, weight], prompt, api_name="lora_add_to_prompt", queue=False)
    add.click(add_to_library, [upload, name], [chosen, words, status], api_name="lora_upload")


def _checked(action):
    """Run a library action; its RequestError becomes a message on the page."""
    try:
        return action()
    except RequestError as exc:
        raise gr.Error(str(exc)) from exc
