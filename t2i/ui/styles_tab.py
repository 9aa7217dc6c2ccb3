"""The Styles tab: import an A1111 styles.csv or Fooocus .json for this session; each preset's preview thumbnail."""

from __future__ import annotations

import gradio as gr

from t2i.request import RequestError
from t2i.studio import Studio
from t2i.styles import preview_path

from t2i.ui.uploads import track_uploads


def create_styles_tab(studio: Studio, form: dict) -> None:
    """Build the tab inside the current Blocks; imported presets join the session's style picker in `form`."""
    library = studio.engine.styles
    picker = form["styles"]
    with gr.Row():
        upload = gr.File(label="Import styles: an A1111 styles.csv or a Fooocus style .json", value=None,
                         file_types=[".csv", ".json"], type="filepath", elem_id="style_upload")
        with gr.Column():
            imported = gr.Textbox(label="Your imported styles (this browser session only, not saved)", value="",
                                  lines=4, interactive=False, elem_id="imported_styles")
            forget = gr.Button("Forget imported styles", elem_id="forget_styles")
    items = [(str(preview_path(name)), f"{name}: {library.get(name).prompt}")
             for name in library.names() if preview_path(name).exists()]
    gr.Markdown("Previews are made with the embedded shapes-world model, so they show how each preset's words "
                "steer that small model, not what the preset gives on a general model.")
    gr.Gallery(value=items, label="Style previews", columns=8, interactive=False, elem_id="style_previews",
               buttons=["fullscreen"])

    def session_view(session: str):
        return "\n".join(studio.session_styles.imported(session)), gr.update(choices=studio.style_names(session))

    def import_styles(path: str | None = None, request: gr.Request = None):
        session = request.session_hash if request else ""
        track_uploads(studio, request, path)
        if not path:
            raise gr.Error("choose an A1111 styles.csv or a Fooocus style .json file")
        try:
            studio.import_styles(path, session)
        except RequestError as exc:
            raise gr.Error(str(exc)) from exc
        return session_view(session)

    def forget_styles(chosen: list | None = None, request: gr.Request = None):
        session = request.session_hash if request else ""
        studio.forget_styles(session)
        text, choices = session_view(session)
        # keep the shared presets the user had picked; the forgotten ones leave the picker
        return text, gr.update(**choices, value=[name for name in chosen or [] if name in library])

    # progress hidden: a refused file shows its message and leaves the style picker usable
    upload.upload(import_styles, upload, [imported, picker], api_name="import_styles", show_progress="hidden")
    forget.click(forget_styles, picker, [imported, picker], api_name="forget_styles")


def wire_style_sessions(demo: gr.Blocks, studio: Studio) -> None:
    """Forget a session's imported styles when its page closes."""

    def end_session(request: gr.Request = None):
        if request is not None:
            studio.forget_styles(request.session_hash)

    demo.unload(end_session)
