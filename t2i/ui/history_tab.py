"""The History tab: this browser's results, newest first, kept across reloads; send one back to the Generate form
(txt2img, img2img / inpaint with it as the init image, or txt2img with hires fix on) or delete it.

The browser keeps a random history id in its encrypted storage (gr.BrowserState); results that land in the
Generate or X/Y/Z galleries are copied into that id's history from the session's output folder, so a page can
record only results its own session made.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from t2i.recipes.outputs import session_folder
from t2i.recipes.a1111_extras import hires_enabled
from t2i.recipes.pnginfo import ReadRecipe, read_png
from t2i.request import PLAIN_FIELDS, RequestError
from t2i.studio import Studio
from t2i.web.history import History

from t2i.ui.train_tab import browser_secret


HIRES_SCALE = 2.0  # what "send to hires fix" turns on for a recipe without hires fix (A1111's default upscale)


def hires_fix_form(recipe: ReadRecipe) -> dict:
    """A txt2img recipe's form with hires fix on: its own hires settings, or an upscale of 2 with the rest as it
    was (seed included), so generating it remakes the image at the larger size."""
    mode = recipe.extra.get("mode", "txt2img")
    if mode != "txt2img":
        raise RequestError(f"hires fix remakes txt2img images; this one was made with {mode} (send it to img2img)")
    values = dict(recipe.form)
    if not hires_enabled(values):
        values["hires_scale"] = HIRES_SCALE
    return values


def _paths(gallery) -> list[str]:
    """The file paths in a gallery's value (entries are paths or (path, caption) pairs)."""
    return [entry[0] if isinstance(entry, (list, tuple)) else entry for entry in gallery or []]


def create_history_tab(studio: Studio, form: dict, tabs: gr.Tabs) -> dict:
    """Build the tab inside the current Blocks; returns its history id state and gallery (see wire_history)."""
    history = History.from_settings(studio.settings)
    history_id = gr.BrowserState("", storage_key="t2i-history", secret=browser_secret(studio.settings))
    gr.Markdown(f"Your results, newest first: the last {studio.settings.history_max} of the last "
                f"{studio.settings.history_days:g} days, kept in this browser across reloads.")
    with gr.Row():
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="History", type="filepath", columns=6, height=420, interactive=False,
                                 elem_id="history_gallery", buttons=["download", "fullscreen"])
        with gr.Column(scale=2):
            info = gr.Textbox(label="Recipe", value="", lines=6, interactive=False, elem_id="history_info")
            selected = gr.Textbox(value="", visible=False)  # the selected entry's file name
            with gr.Row():
                to_txt2img = gr.Button("Send to txt2img", elem_id="history_to_txt2img")
                to_img2img = gr.Button("Send to img2img / inpaint", elem_id="history_to_img2img")
                to_hires = gr.Button("Send to hires fix", elem_id="history_to_hires")
                delete = gr.Button("Delete", variant="stop", elem_id="history_delete")

    def listed(history_id: str) -> list[str]:
        return [str(entry.path) for entry in history.entries(history_id)]

    def pick(gallery=None, event: gr.SelectData = None):
        if not gallery or event is None:
            return "", ""
        path = _paths(gallery)[event.index]
        return read_png(path).text, Path(path).name

    gallery.select(pick, gallery, [info, selected], queue=False, api_visibility="private")

    def entry_path(history_id: str, name: str) -> Path:
        entry = next((e for e in history.entries(history_id) if e.name == name), None) if name else None
        if entry is None:
            raise gr.Error("pick an image in your history first")
        return entry.path

    def send(history_id="", name="", target="txt2img"):
        path = entry_path(history_id, name)
        recipe = read_png(path)
        try:
            values = hires_fix_form(recipe) if target == "hires" else dict(recipe.form)
        except RequestError as exc:
            raise gr.Error(str(exc)) from exc
        named = values.get("model")
        if named and named not in studio.model_choices():
            del values["model"]
            gr.Warning(f"the recipe names the model {named!r}, which this server does not have; "
                       "the form keeps its current model")
        updates = [gr.update(value=values[n]) if n in values else gr.update() for n in PLAIN_FIELDS]
        return [*updates, gr.update(value=str(path) if target == "img2img" else None), gr.Tabs(selected="generate")]

    outputs = [*[form[name] for name in PLAIN_FIELDS], form["init_image"], tabs]
    to_txt2img.click(lambda history_id="", name="": send(history_id, name), [history_id, selected], outputs,
                     api_visibility="private", show_progress="hidden")
    to_img2img.click(lambda history_id="", name="": send(history_id, name, "img2img"), [history_id, selected],
                     outputs, api_visibility="private", show_progress="hidden")
    to_hires.click(lambda history_id="", name="": send(history_id, name, "hires"), [history_id, selected], outputs,
                   api_visibility="private", show_progress="hidden")

    def remove(history_id="", name=""):
        try:
            history.delete(history_id, name)
        except RequestError as exc:
            raise gr.Error(str(exc)) from exc
        return listed(history_id), "", ""

    delete.click(remove, [history_id, selected], [gallery, info, selected], api_visibility="private",
                 show_progress="hidden")
    return {"history": history, "history_id": history_id, "gallery": gallery, "listed": listed}


def wire_history(demo: gr.Blocks, studio: Studio, parts: dict, sources: list[gr.Gallery]) -> None:
    """Show the browser's history once its stored id arrives; record each result that lands in one of the
    `sources` galleries (the first result gives the browser its id)."""
    history: History = parts["history"]

    def show(history_id=""):
        return parts["listed"](history_id) if History.is_id(history_id) else []

    # the page reads its storage after loading: at load the id may still be empty, and a change follows. An id is
    # never made here, or a reload would replace the stored one before it arrived.
    demo.load(show, parts["history_id"], parts["gallery"], api_visibility="private", show_progress="hidden")
    parts["history_id"].change(show, parts["history_id"], parts["gallery"], api_visibility="private",
                               show_progress="hidden")

    def record(gallery=None, history_id="", request: gr.Request = None):
        """Copy this session's new results into the history (paths from elsewhere are ignored)."""
        if request is None or not gallery:
            return gr.update(), gr.update()
        history_id = history_id if History.is_id(history_id) else History.new_id()
        # a gallery holds Gradio's cached copies, named as the originals: the session's own outputs by those names
        own = session_folder(studio.settings.data_dir, request.session_hash)
        names = [Path(p).name for p in _paths(gallery)]
        mine = [own / name for name in names if name.endswith(".png") and (own / name).is_file()]
        if not mine:
            return gr.update(), gr.update()
        history.add(history_id, reversed(mine))  # the first result shown is the newest
        return history_id, parts["listed"](history_id)

    for source in sources:
        source.change(record, [source, parts["history_id"]], [parts["history_id"], parts["gallery"]],
                      api_visibility="private", show_progress="hidden")
