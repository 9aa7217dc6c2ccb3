"""The PNG info tab, recipe links and "Copy link": recipes in and out of the Generate form.

`form` is the Generate tab's widgets by GenerateForm field name, plus `gallery`, `copy_link` and `link`.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from t2i.recipes.labels import describe_labels
from t2i.recipes.links import form_from_query, recipe_query
from t2i.recipes.pnginfo import ReadRecipe, parse_infotext, read_png
from t2i.request import PLAIN_FIELDS, RequestError
from t2i.studio import Studio

from t2i.ui.uploads import track_uploads

MAX_PNG_BYTES = 50 << 20


def create_recipe_tab(studio: Studio, form: dict, tabs: gr.Tabs) -> None:
    """Build the PNG info tab inside the current Blocks and wire its buttons to the Generate form."""
    with gr.Row():
        with gr.Column():
            png = gr.File(label="PNG made here, by A1111 or another tool", file_types=[".png"], type="filepath",
                          value=None, elem_id="pnginfo_file")
            with gr.Row():
                send_txt2img = gr.Button("Send to txt2img", elem_id="send_txt2img")
                send_img2img = gr.Button("Send to img2img", elem_id="send_img2img")
        with gr.Column():
            text = gr.Textbox(label="Parameters (or paste A1111 text here)", value="", lines=6, elem_id="pnginfo_text")
            details = gr.Markdown(elem_id="pnginfo_details")
    fields = [form[name] for name in PLAIN_FIELDS]

    def read(path: str | None = None, text: str = "") -> ReadRecipe:
        try:
            if path:
                if Path(path).stat().st_size > MAX_PNG_BYTES:
                    raise RequestError(f"the file is larger than {MAX_PNG_BYTES >> 20} MB")
                return read_png(path)
            return parse_infotext(text)
        except RequestError as exc:
            raise gr.Error(str(exc)) from exc

    def png_info(path: str | None = None, request: gr.Request = None):
        track_uploads(studio, request, path)
        if not path:
            return "", ""
        recipe = read(path)
        lines = [f"**Read from:** {'t2i recipe' if recipe.source == 't2i' else 'A1111 parameters'}"]
        lines += [f"- {note}" for note in recipe.notes]
        if recipe.source == "a1111":
            lines += [f"- {key}: `{value}`" for key, value in recipe.extra.items()]
        lines += [f"- AI-generated label: {label}" for label in describe_labels(Path(path).read_bytes())]
        return recipe.text, "\n".join(lines)

    def recipe_to_send(path: str | None, text: str) -> ReadRecipe:
        """The text box's recipe when the user pasted or edited it; else the PNG's (our JSON chunk holds more)."""
        if not text.strip():
            return read(path, "")
        if path:
            try:
                from_png = read(path)
                if from_png.text.strip() == text.strip():
                    return from_png
            except gr.Error:  # a PNG without a recipe: the pasted text is the recipe
                pass
        return read(None, text)

    def send(path: str | None = None, text: str = "", to_img2img: bool = False):
        recipe = recipe_to_send(path, text or "")
        values = dict(recipe.form)
        named = values.get("model")
        if named and named not in studio.model_choices():  # keep a model that works; say which one was named
            del values["model"]
            gr.Warning(f"the recipe names the model {named!r}, which this server does not have; "
                       "the form keeps its current model")
        updates = [gr.update(value=values[n]) if n in values else gr.update() for n in PLAIN_FIELDS]
        # "Send to txt2img" clears an init image left by an earlier "Send to img2img": the run must be txt2img
        init = gr.update(value=path if to_img2img and path else None)
        return [*updates, init, gr.Tabs(selected="generate")]

    # errors are queued events (Gradio shows no message for an unqueued one) with their progress hidden, so a
    # refused file or text shows its message and leaves the form fields usable
    png.change(png_info, png, [text, details], api_name="png_info", show_progress="hidden")
    outputs = [*fields, form["init_image"], tabs]
    send_txt2img.click(lambda path=None, text="": send(path, text), [png, text], outputs,
                       api_name="send_to_txt2img", show_progress="hidden")
    send_img2img.click(lambda path=None, text="": send(path, text, to_img2img=True), [png, text], outputs,
                       api_name="send_to_img2img", show_progress="hidden")

    def link_for_results(gallery=None, selected=0) -> str:
        """The query string of the recipe of the result being viewed."""
        if not gallery:
            raise gr.Error("generate an image first: the link carries the recipe of a result")
        entry = gallery[min(selected or 0, len(gallery) - 1)]
        return recipe_query(read(entry[0] if isinstance(entry, (list, tuple)) else entry).form)

    # the page turns the query into a full link (it knows the address the user sees) and copies it
    form["copy_link"].click(link_for_results, [form["gallery"], form["selected"]], form["link"],
                            api_name="recipe_link", show_progress="hidden").success(
        None, form["link"], form["link"], js=_COPY_JS, api_name="copy_recipe_link")


_COPY_JS = """(query) => {
  if (!query) return "";
  const url = window.location.origin + window.location.pathname + query;
  navigator.clipboard?.writeText(url).catch(() => {});
  return url;
}"""


def wire_recipe_links(demo: gr.Blocks, studio: Studio, form: dict) -> None:
    """Opening `/?prompt=...&seed=...` fills the Generate form with that recipe."""

    def fill_from_link(request: gr.Request = None):
        query = str(request.query_params) if request is not None else ""
        try:
            values = form_from_query(query, studio.settings)
        except RequestError as exc:
            raise gr.Error(f"recipe link: {exc}") from exc
        return [gr.update(value=values[n]) if n in values else gr.update() for n in PLAIN_FIELDS]

    demo.load(fill_from_link, None, [form[name] for name in PLAIN_FIELDS], api_name="recipe_from_link",
              show_progress="hidden")
