"""The X/Y/Z plot tab: up to three axes over the Generate form's request (its current values are the base), one
labelled grid per Z value plus each cell's own PNG; the `/xyz_plot` API endpoint takes the form's fields and the
axes. Stop (`/xyz_stop`) ends the session's plot between cells or at the running cell's next step; a stopped
plot saves nothing."""

from __future__ import annotations

import logging
import uuid
from typing import Callable

import gradio as gr

from t2i.grid.axes import Axis, axis_choices
from t2i.grid.plot import PlotStopped, RunningPlots, plan_plot, run_plot, save_plot
from t2i.models.access import check_server_model
from t2i.recipes.infotext import infotext
from t2i.recipes.outputs import session_folder
from t2i.request import REQUEST_FIELDS, RequestError
from t2i.studio import GenerateForm, Studio

from t2i.ui.generate_tab import MODEL_WORK, takes_form_fields
from t2i.ui.uploads import track_uploads

log = logging.getLogger(__name__)
SYNTAX_HELP = ("Values: `a, b, c` (double quotes keep a comma in a value); numbers also `1-5`, `1-10 (+2)`, "
               "`0.5-2 [4]` (four evenly spaced). Prompt S/R: the first value is searched for in the prompt, each "
               "value replaces it (a LoRA weight: `<lora:ink:0.5>, <lora:ink:1>`). The seed, when -1, is drawn "
               "once for the whole plot.")


def create_grid_tab(studio: Studio, form: dict, gpu: Callable = lambda fn: fn) -> gr.Gallery:
    """Build the tab inside the current Blocks; returns its results gallery."""
    settings = studio.settings
    gr.Markdown("Compare settings: each cell is the Generate form's request with the axes' values, made exactly "
                "as it would be made alone. " + SYNTAX_HELP)
    axes_widgets = []
    for name, hint in (("X", "3, 5, 7"), ("Y", "1-3"), ("Z", "")):
        with gr.Row():
            # custom values: API callers may name a field as the CLI does (`cfg`); unknown names get their error
            kind = gr.Dropdown(label=f"{name} axis", choices=["", *axis_choices()], value="", scale=1,
                               allow_custom_value=True, elem_id=f"xyz_{name.lower()}_axis")
            values = gr.Textbox(label=f"{name} values", value="", placeholder=hint, scale=3,
                                elem_id=f"xyz_{name.lower()}_values")
        axes_widgets += [kind, values]
    running = RunningPlots()
    with gr.Row():
        plot_btn = gr.Button("Make plot", variant="primary", elem_id="xyz_run")
        stop_btn = gr.Button("Stop", elem_id="xyz_stop")
    gallery = gr.Gallery(label="Grid, then each cell", type="filepath", columns=4, height=480, interactive=False,
                         elem_id="xyz_gallery", buttons=["download", "fullscreen"])
    info = gr.Textbox(label="Plot", value="", lines=3, interactive=False, elem_id="xyz_info")

    @takes_form_fields
    def make_plot(x_axis="", x_values="", y_axis="", y_values="", z_axis="", z_values="",
                  request: gr.Request = None, progress=gr.Progress(), **values):
        session = request.session_hash if request else ""
        track_uploads(studio, request, *(values[n] for n, spec in REQUEST_FIELDS.items() if spec.widget == "image"))
        try:
            studio.rate_limiter.acquire(request.client.host if request and request.client else session)
            base = studio.request_from_form(GenerateForm(**values), session)
            axes = [Axis.parse(kind, text) if kind else None for kind, text in (
                (x_axis, x_values), (y_axis, y_values), (z_axis, z_values))]
            if not any(axes):
                raise RequestError("choose at least one axis")
            plot = plan_plot(studio.engine, base, axes, check_model=lambda m: check_server_model(m, settings))
            with running.running(session) as cancel:
                run_plot(studio.engine, plot, on_cell=lambda done, total: progress((done, total), desc="cells"),
                         cancel=cancel)
            folder = session_folder(settings.data_dir, session)
            paths = save_plot(plot, folder / f"grid-{uuid.uuid4().hex[:12]}.png", folder, studio.labeller,
                              unique=True)
        except PlotStopped as exc:  # the Stop button already said so on the page; an API caller reads it here
            yield [], f"Stopped: {exc}"
            return
        except RequestError as exc:
            raise gr.Error(str(exc)) from exc
        except Exception as exc:  # the page gets a message; the server keeps serving
            log.exception("X/Y/Z plot failed")
            raise gr.Error(f"plot failed: {type(exc).__name__}: {exc}") from exc
        withheld = sum(cell.image.image is None for cell in plot.cells)
        summary = (f"{len(plot.cells)} cells" + (f", {withheld} withheld by the safety checker" if withheld else "")
                   + f"\n{infotext(plot.cells[0].image.parameters)}")
        yield [str(p) for p in paths], summary

    plot = plot_btn.click(gpu(make_plot), inputs=[form[name] for name in REQUEST_FIELDS] + axes_widgets,
                          outputs=[gallery, info], api_name="xyz_plot", concurrency_id=MODEL_WORK,
                          concurrency_limit=max(1, settings.batch_max))

    def stop(request: gr.Request = None):
        # the page cancels its own event; the plot's thread ends at the cancel event (API callers have only this)
        stopped = running.stop(request.session_hash if request else "")
        return ("Stopped: the plot ended before its last cell; no grid was made and its images were not kept."
                if stopped else "No plot of yours was running.")

    stop_btn.click(stop, None, info, cancels=[plot], api_name="xyz_stop", queue=False)
    return gallery
