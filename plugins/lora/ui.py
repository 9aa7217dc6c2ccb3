"""The LoRA plugin's own panel, the LoRA library: upload a LoRA (checked against the chosen model), refresh the list,
see a LoRA's trigger words, put it in the prompt, and delete what this page uploaded. Only t2i.ui imports it.

The lists (the library's and each LoRA unit's) offer the LoRAs for the Model box's family: a LoRA whose metadata
names another family (our trainer writes it) is left out; one that names none is offered, and generation's fit
check still refuses it if it does not fit."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from t2i.plugins import Param
from t2i.request import RequestError
from t2i.studio import Studio
from t2i.ui.model_family import model_family
from t2i.ui.plugin_panels import PanelContext, unit_key
from t2i.ui.uploads import track_uploads

from .adapter import NAME, LoraAdapter


def create_panel(studio: Studio, lora: LoraAdapter, context: PanelContext) -> None:
    """Build the panel inside the current Blocks; uploads are checked against the model in the Model box."""
    prompt, model = context.inputs["prompt"], context.inputs["model"]
    with gr.Accordion("LoRA library", open=False, elem_id="lora-library"):
        with gr.Row():
            # custom values pass (the library checks every name): the choices a session was sent may predate a LoRA
            chosen = gr.Dropdown(label="LoRA", choices=lora.library.names(), value=None, allow_custom_value=True,
                                 elem_id="lora_chosen", scale=3)
            refresh = gr.Button("Refresh", size="sm", scale=0, min_width=80)
        words = gr.Textbox(label="Trigger words", value="", interactive=False, elem_id="lora_trigger_words")
        with gr.Row():
            weight = gr.Slider(label="Weight", minimum=-2, maximum=2, step=0.05, value=1.0, scale=3)
            insert = gr.Button("Add to prompt", size="sm", scale=1, min_width=120, elem_id="lora_insert")
        with gr.Row():
            upload = gr.File(label="Upload a .safetensors LoRA", file_types=[".safetensors"], type="filepath",
                             value=None, scale=3, elem_id="lora_upload")
            name = gr.Textbox(label="Save as", value="", placeholder="name in the library (default: file name)", scale=2)
        with gr.Row():
            add = gr.Button("Add to library", size="sm", elem_id="lora_add")
            delete = gr.Button("Delete my upload", size="sm", variant="stop", visible=False, elem_id="lora_delete")
        status = gr.Markdown("", elem_id="lora_status")
        # what this page uploaded, name -> content hash: only those may be deleted from here (kept on the server,
        # per session, so no caller can claim another's upload)
        mine = gr.State({})

    unit_names = [context.unit_widgets[unit_key(lora, unit, NAME.name)] for unit in range(1, lora.max_units + 1)
                  if unit_key(lora, unit, NAME.name) in context.unit_widgets]

    def offered(model_name="") -> list[str]:
        return unit_choices(studio, lora, NAME, model_name)

    def refreshed(current=None, model_name=""):
        names = offered(model_name)
        return gr.update(choices=names, value=current if current in names else None)

    def refreshed_all(current=None, model_name="", *units):
        """The library list and every unit's list for the model; a chosen LoRA that does not fit is cleared."""
        names = offered(model_name)
        return [gr.update(choices=names, value=current if current in names else None)] + \
            [gr.update(choices=names, value=unit if unit in names else None) for unit in units]

    def trigger_words(name=None) -> str:
        return ", ".join(_checked(lambda: lora.trigger_words(name))) if name else ""

    def add_to_prompt(text="", name=None, weight=1.0) -> str:
        if not name:
            raise gr.Error("choose a LoRA first")
        words = _checked(lambda: lora.trigger_words(name))
        return " ".join(part for part in (text.strip(), f"<lora:{name}:{weight:g}>", ", ".join(words)) if part)

    def add_to_library(path=None, name="", model="", uploaded=None, request: gr.Request = None):
        track_uploads(studio, request, path)
        if not path:
            raise gr.Error("choose a .safetensors file to upload")

        def fits(source: Path, label: str) -> None:  # the check generation makes, against the chosen model
            lora.fits(studio.model_for(model), source, label)

        saved = _checked(lambda: lora.library.add(Path(path), name.strip() or Path(path).stem, fits))
        return (gr.update(choices=offered(model), value=saved.name), ", ".join(saved.trigger_words),
                f"Added **{saved.name}** (hash {saved.short_hash}).", {**(uploaded or {}), saved.name: saved.sha256},
                gr.update(visible=True))

    def deletable(name=None, uploaded=None):
        return gr.update(visible=bool(name) and name in (uploaded or {}))

    def delete_upload(name=None, uploaded=None, model=""):
        uploaded = dict(uploaded or {})
        if not name or name not in uploaded:
            raise gr.Error("only a LoRA uploaded from this page can be deleted here")
        _checked(lambda: lora.library.remove(name, uploaded.pop(name)))
        return (gr.update(choices=offered(model), value=None), "", f"Deleted **{name}**.", uploaded,
                gr.update(visible=False))

    # events that can fail are queued (an unqueued gr.Error shows no message) and show no progress on their outputs,
    # so a failure is a message and never an "Error" badge over the prompt or the list
    quiet = dict(show_progress="hidden")
    refresh.click(refreshed, [chosen, model], chosen, api_name="lora_refresh", **quiet)
    # a change of model: the lists offer the LoRAs for its family (on page load, the generic unit refresh asks
    # unit_choices for the model selected then, and the library list is refreshed below)
    gr.on([model.change], refreshed_all, [chosen, model, *unit_names], [chosen, *unit_names],
          api_visibility="private", queue=False)
    gr.on(None, refreshed, [chosen, model], chosen, api_visibility="private", queue=False)
    chosen.change(trigger_words, chosen, words, api_name="lora_trigger_words", **quiet)
    chosen.change(deletable, [chosen, mine], delete, api_visibility="private", queue=False)
    insert.click(add_to_prompt, [prompt, chosen, weight], prompt, api_name="lora_add_to_prompt", **quiet)
    add.click(add_to_library, [upload, name, model, mine], [chosen, words, status, mine, delete],
              api_name="lora_upload", show_progress_on=status)
    delete.click(delete_upload, [chosen, mine, model], [chosen, words, status, mine, delete], api_name="lora_delete",
                 **quiet)


def unit_choices(studio: Studio, lora: LoraAdapter, param: Param, model_name: str = "") -> list[str]:
    """A LoRA unit's list: the library's LoRAs for the family of the model in the Model box."""
    if param.name != NAME.name:
        return lora.choices(param)
    return lora.library.names(model_family(model_name or "", studio.settings))


def _checked(action):
    """Run a library action; its RequestError becomes a message on the page."""
    try:
        return action()
    except RequestError as exc:
        raise gr.Error(str(exc)) from exc
