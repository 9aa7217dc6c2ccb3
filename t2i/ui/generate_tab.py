"""The Generate tab: widgets wired to Studio actions, every event a named API endpoint."""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Callable

import gradio as gr

from t2i.recipes.pnginfo import read_png
from t2i.request import REQUEST_FIELDS, RequestError
from t2i.settings import Settings
from t2i.studio import GenerateForm, Studio

from t2i.ui.plugin_panels import (PanelContext, accept_plugin_values, create_own_panels, create_plugin_panels,
                            units_from_values)
from t2i.ui.canvas import create_brush_canvas
from t2i.ui.extras_panel import create_extras_panel
from t2i.ui.family_defaults import FAMILY_FIELDS, SAMPLER_FIELDS, SIZE_FIELDS, form_updates, model_defaults
from t2i.ui.uploads import track_uploads
from t2i.ui.widgets import upload_image

log = logging.getLogger(__name__)
MODEL_WORK = "model"  # one concurrency group for everything that runs a model
# what the Model box takes when T2I_MODEL_LOCAL_PATHS is off (t2i/models/access.py); when on, its declared help
SERVER_MODEL_HELP = "'embedded', a model from the server's model folder, or a hub id (owner/name)"
_COMPONENTS = {"text": gr.Textbox, "dropdown": gr.Dropdown, "multiselect": gr.Dropdown, "slider": gr.Slider,
               "number": gr.Number}


def field_widget(name: str, settings: Settings, **overrides) -> gr.Component:
    """The input for one declared request field: its label, default, range, choices and help, then `overrides`."""
    spec = REQUEST_FIELDS[name]
    if spec.widget == "image":
        return upload_image(spec.label, **overrides)
    options = dict(label=spec.label, value=spec.default, info=spec.help or None)
    if spec.widget == "slider":
        minimum, maximum = spec.bounds(settings)
        options.update(minimum=minimum, maximum=maximum, step=spec.step)
    elif spec.widget == "number":  # no range here: out-of-range values get the request's own message
        options.update(precision=0 if spec.type is int else None)
    elif spec.widget in ("dropdown", "multiselect"):
        multiselect = spec.widget == "multiselect"
        options.update(choices=list(spec.choices), multiselect=multiselect,
                       value=list(spec.default) if multiselect else spec.default)
    return _COMPONENTS[spec.widget](**{**options, **overrides})


def takes_form_fields(fn: Callable) -> Callable:
    """`fn(request=, progress=, **values)` as an event handler whose first parameters are the declared fields,
    named, ordered and defaulted as declared: they are the `/generate` API parameters."""
    own = list(inspect.signature(fn).parameters.values())
    signature = inspect.Signature([inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                     default=spec.default)
                                   for name, spec in REQUEST_FIELDS.items()] + own)

    @functools.wraps(fn)
    def handler(*args, **kwargs):
        arguments = signature.bind(*args, **kwargs).arguments
        yield from fn(**arguments.pop(own[-1].name, {}), **arguments)

    handler.__signature__ = signature
    return handler


def create_generate_tab(studio: Studio, gpu: Callable = lambda fn: fn) -> dict:
    """Build the tab inside the current Blocks; `gpu` wraps model work (spaces.GPU on ZeroGPU).

    Returns the form widgets by GenerateForm field name, plus the results gallery and the recipe link widgets.
    """
    settings = studio.settings
    # batching (T2I_BATCH_MAX) can only group requests that are in the engine at once; the group's lowest limit wins
    # on Ray (T2I_BACKEND=ray) as many as the replicas hold at once
    model_work_limit = max(1, settings.batch_max, getattr(studio.generator, "concurrency", 1))
    widgets: dict[str, gr.Component] = {}  # the form's inputs by field name: laid out here, each built as declared
    # the form starts as the default model's family would have it (the declared defaults on the embedded model)
    declared_samplers = {name: REQUEST_FIELDS[name].default for name in SAMPLER_FIELDS}
    initial = {name: {key: value for key, value in update.items() if key != "__type__"} for name, update in
               form_updates(model_defaults(settings.default_model, settings), declared_samplers, True).items()}

    def place(name: str, **overrides) -> gr.Component:
        widgets[name] = field_widget(name, settings, **{**initial.get(name, {}), **overrides})
        return widgets[name]

    with gr.Row():
        with gr.Column(scale=3):
            place("prompt", lines=3, elem_id="prompt", placeholder="a red circle in the top left on a blue background")
            place("negative_prompt", lines=2, elem_id="negative")
        with gr.Column(scale=1, min_width=160):
            generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
            stop_btn = gr.Button("Stop", elem_id="stop")
    with gr.Row():
        with gr.Column(scale=1):
            place("styles", choices=studio.style_names())
            model_help = {} if settings.model_local_paths else {"info": SERVER_MODEL_HELP}
            model = place("model", choices=studio.model_choices(), value=settings.default_model, elem_id="model",
                          allow_custom_value=True, **model_help)
            sampler = place("sampler", elem_id="sampler")
            place("steps")
            place("cfg")
            place("distilled_cfg")  # shown for models with distilled guidance (Flux.1 dev, Flux.2)
            with gr.Row():
                place("width")
                place("height")
            with gr.Row():
                seed = place("seed", elem_id="seed")
                random_btn = gr.Button("Random", scale=0, min_width=80)
                reuse_btn = gr.Button("Reuse last", scale=0, min_width=80)
            with gr.Row():
                place("batch_count")
                place("batch_size")
            with gr.Accordion("img2img / inpainting", open=False):
                init_image = place("init_image", sources=["upload", "clipboard"], elem_id="init_image")
                create_brush_canvas(init_image, place("mask", sources=["upload"], elem_id="mask"))
                place("strength")
                with gr.Row():
                    place("mask_blur")
                    place("inpainting_mask_invert")
                with gr.Row():
                    place("masked_content")
                    place("inpaint_area")
                    place("inpaint_padding")
                with gr.Row():
                    for side in ("left", "right", "top", "bottom"):
                        place(f"outpaint_{side}", step=8, minimum=0)
            create_extras_panel(studio, place)  # hires fix, clip skip, VAE, embeddings
            for name in REQUEST_FIELDS:  # a field declared after this layout was written still gets its widget
                if name not in widgets:
                    place(name)
            plugins = studio.plugins()
            plugin_widgets = create_plugin_panels(plugins, studio, model)  # unit lists fit the model
            create_own_panels(studio, plugins, PanelContext(  # e.g. the LoRA library, the ControlNet preview
                widgets, plugin_widgets, MODEL_WORK, model_work_limit))
        with gr.Column(scale=2):
            preview = gr.Image(label="Preview", type="pil", interactive=False, visible=False, height=256, elem_id="preview")
            run_status = gr.Markdown("", elem_id="run_status")
            gallery = gr.Gallery(label="Images", type="filepath", columns=4, height=420, elem_id="gallery",
                                 buttons=["download", "fullscreen"], interactive=False)
            info = gr.Textbox(label="Generation parameters", value="", lines=4, interactive=False, elem_id="info")
            last_seed = gr.Number(label="Last seed", value=-1, precision=0, interactive=False, elem_id="last_seed")
            with gr.Row():
                link = gr.Textbox(label="Recipe link", value="", interactive=False, elem_id="recipe_link",
                                  buttons=["copy"], scale=4)
                copy_link = gr.Button("Copy link", elem_id="copy_link", scale=1, min_width=100)
            selected = gr.State(0)  # the result the user is looking at: its recipe is the one shown and linked

    # defaults on every parameter make each one optional for API callers (gradio_client)
    @takes_form_fields
    def generate(request: gr.Request = None, progress=gr.Progress(), **values):
        form_values = {name: values.pop(name) for name in REQUEST_FIELDS}  # the rest are plugin unit values
        images = [form_values[name] for name, spec in REQUEST_FIELDS.items() if spec.widget == "image"]
        track_uploads(studio, request, *images, values)
        form = GenerateForm(**form_values, plugin_units=units_from_values(plugins, values))
        try:
            client = request.client.host if request and request.client else ""
            for update in studio.generate(form, request.session_hash if request else "", client):
                if update.progress is not None:
                    event = update.progress
                    progress((event.step, event.total_steps), desc=f"batch {event.batch}/{event.total_batches}")
                    if update.preview is not None:
                        yield gr.update(value=update.preview, visible=True), gr.update(), gr.update(), gr.update()
                else:
                    yield (gr.update(value=None, visible=False), [str(p) for p in update.files], update.info,
                           update.seed)
        except RequestError as exc:
            raise gr.Error(str(exc)) from exc
        except Exception as exc:  # the page gets a message; the server keeps serving
            log.exception("generation failed")
            raise gr.Error(f"generation failed: {type(exc).__name__}: {exc}") from exc

    run = generate_btn.click(
        gpu(accept_plugin_values(generate, plugin_widgets)),
        inputs=[widgets[name] for name in REQUEST_FIELDS],
        inputs_kwargs=plugin_widgets,  # one named API parameter per plugin unit field, e.g. lora_1_weight
        outputs=[preview, gallery, info, last_seed], api_name="generate", concurrency_id=MODEL_WORK,
        concurrency_limit=model_work_limit,
        show_progress_on=[gallery],  # Gradio's progress overlay would cover the live preview
    )
    generate_btn.click(lambda: "", None, run_status, queue=False, api_visibility="private")
    # then the first image opens large, as A1111 shows a result (a view change, not an action: no API endpoint)
    run.then(lambda: (gr.Gallery(selected_index=0), 0), None, [gallery, selected], queue=False,
             api_visibility="private")

    def show_selected(gallery=None, event: gr.SelectData = None):
        """The recipe, seed and index of the result the user clicked (each image of a batch has its own seed)."""
        if not gallery or event is None:
            return gr.update(), gr.update(), gr.update(), 0
        entry = gallery[event.index]
        recipe = read_png(entry[0] if isinstance(entry, (list, tuple)) else entry)
        return recipe.text, recipe.form.get("seed", -1), "", event.index

    gallery.select(show_selected, gallery, [info, last_seed, link, selected], queue=False, api_visibility="private")

    def warn_sampler(model="", sampler=REQUEST_FIELDS["sampler"].default):
        """The sampler's help text, or why it will not suit the chosen model."""
        try:
            warning = studio.sampler_warning(model, sampler)
        except Exception as exc:  # a model this server does not offer or cannot load: generating says why
            warning = ""
            log.info("sampler check skipped: %s", exc)
        return gr.update(info=f"⚠ {warning}" if warning else None)

    for trigger in (sampler.change, model.change):
        trigger(warn_sampler, [model, sampler], sampler, queue=False, show_progress="hidden",
                api_visibility="private")

    # the form follows the chosen model's family: a model the user picks brings its family's size, steps, guidance
    # and samplers (`input` fires only on the user's own change), while a model set by a recipe (PNG info, a link)
    # changes only which samplers and boxes are offered, so the recipe's values stay
    family_outputs = list(dict.fromkeys([*SAMPLER_FIELDS, *FAMILY_FIELDS, *SIZE_FIELDS]))

    def follow_model(with_values: bool) -> Callable:
        def follow(model="", *samplers):
            updates = form_updates(model_defaults(model, settings), dict(zip(SAMPLER_FIELDS, samplers)), with_values)
            return [updates.get(name, gr.update()) for name in family_outputs]
        return follow

    for trigger, with_values in ((model.input, True), (model.change, False)):
        trigger(follow_model(with_values), [model, *(widgets[name] for name in SAMPLER_FIELDS)],
                [widgets[name] for name in family_outputs], queue=False, show_progress="hidden",
                api_visibility="private")

    def stop(request: gr.Request = None):
        # the page cancels `run` itself; API callers have only this call, so the studio stops the session's runs too
        studio.stop(request.session_hash if request else "")
        return gr.update(value=None, visible=False), "**Stopped.** The run was cancelled; its images were not kept."

    stop_btn.click(stop, None, [preview, run_status], cancels=[run], api_name="stop", queue=False).then(
        # again once the cancelled run's last messages have landed: one of them may show a preview again
        lambda: gr.update(value=None, visible=False), None, preview, queue=False, api_visibility="private")
    random_btn.click(lambda: -1, None, seed, api_name="random_seed", queue=False)
    reuse_btn.click(lambda last_seed=-1: last_seed, last_seed, seed, api_name="reuse_seed", queue=False)
    return {**widgets, "gallery": gallery, "selected": selected, "link": link, "copy_link": copy_link}
