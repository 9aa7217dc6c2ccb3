"""The Generate tab's hires fix, clip skip, VAE and embeddings controls: the declared request fields, placed with
the live lists of the upscaler, VAE and embeddings folders (a refresh button reads the folders again)."""

from __future__ import annotations

from typing import Callable

import gradio as gr

EMBEDDING_HEADERS = ["embedding (write its name in a prompt)", "for", "tokens"]


def create_extras_panel(studio, place: Callable[..., gr.Component]) -> None:
    """Place the hires fix, clip skip and VAE fields (built by `place` from their declarations) and the list of
    embeddings; must run inside the Generate tab's form column."""
    extras = studio.engine.runner.extras
    with gr.Accordion("Hires fix", open=False):
        with gr.Row():
            place("hires_scale")
            upscaler = place("hires_upscaler", choices=extras.upscalers.names())
        with gr.Row():
            place("hires_steps")
            place("hires_denoise")
        with gr.Row():
            place("hires_width")
            place("hires_height")
        place("hires_prompt", lines=1)
        place("hires_negative_prompt", lines=1)
        place("hires_sampler")
    with gr.Row():
        place("clip_skip")
        vae = place("vae", choices=extras.vaes.names(), elem_id="vae")
    with gr.Accordion("Embeddings", open=False):
        embeddings = gr.Dataframe(value=_embedding_rows(extras), headers=EMBEDDING_HEADERS, interactive=False,
                                  elem_id="embeddings")
        refresh = gr.Button("Refresh VAEs, upscalers and embeddings", size="sm")

    def refresh_lists():
        return (gr.update(choices=extras.upscalers.names()), gr.update(choices=extras.vaes.names()),
                _embedding_rows(extras))

    refresh.click(refresh_lists, None, [upscaler, vae, embeddings], api_name="refresh_extras")


def _embedding_rows(extras) -> list[list]:
    return [[name, family, count] for name, family, count in extras.embeddings.listing()] or [["", "", 0]]
