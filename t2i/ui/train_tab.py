"""The Train tab: upload -> gallery with editable captions -> preset/name/trigger -> start/cancel, live progress.

Training runs in its own process (t2i.train.runner); this tab only reads its progress file, once a second.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from t2i.request import RequestError
from t2i.studio import Studio
from t2i.train.config import DEFAULT_PRESET, METHODS, PRESETS
from t2i.train.studio import TrainingStudio


def create_train_tab(studio: Studio) -> None:
    """Build the tab inside the current Blocks."""
    trainer = TrainingStudio(studio.settings, studio.engine.safety)
    gr.Markdown("Pick 5-20 images of one style or subject (same-name .txt files or the table below give captions), "
                "a name and a trigger word. The finished LoRA appears in the Generate tab's LoRA list.")
    with gr.Row():
        with gr.Column(scale=2):
            files = gr.File(label="Images, .txt captions or a .zip", file_count="multiple", value=None,
                            file_types=["image", ".txt", ".zip"], type="filepath")
            check_btn = gr.Button("Check images", elem_id="train_check")
            notes = gr.Markdown("")
            gallery = gr.Gallery(label="Dataset", columns=6, height=240, interactive=False, elem_id="train_gallery")
            captions = gr.Dataframe(headers=["file", "caption"], datatype=["str", "str"], value=[["", ""]],
                                    interactive=True, label="Captions (editable)", elem_id="train_captions")
            token = gr.State("")
        with gr.Column(scale=1):
            preset = gr.Dropdown(label="Preset", choices=list(PRESETS), value=DEFAULT_PRESET)
            method = gr.Dropdown(label="Method", choices=["(preset)", *METHODS], value="(preset)")
            name = gr.Textbox(label="Name", value="", placeholder="my_style")
            trigger = gr.Textbox(label="Trigger word", value="", placeholder="a rare word, e.g. zqx")
            steps = gr.Number(label="Steps (0 = preset)", value=0, precision=0)
            with gr.Row():
                start_btn = gr.Button("Start training", variant="primary", elem_id="train_start")
                cancel_btn = gr.Button("Cancel", elem_id="train_cancel")
            run_id = gr.Textbox(label="Run", value="", interactive=False, elem_id="train_run")
            state = gr.Markdown("")
            bar = gr.Slider(label="Progress (steps)", minimum=0, maximum=1, value=0, interactive=False)
    with gr.Row():
        losses = gr.LinePlot(value=pd.DataFrame({"step": [], "loss": []}), x="step", y="loss", label="Loss",
                             height=240)
        samples = gr.Gallery(label="Samples (with / without the trigger)", columns=4, height=240, interactive=False,
                             elem_id="train_samples")
    timer = gr.Timer(1.0, active=False)

    def check(paths=None):
        try:
            checked = trainer.check_upload(paths or [])
        except RequestError as exc:
            raise gr.Error(str(exc)) from exc
        shown = "\n".join(f"- {note}" for note in checked.notes) or "All images are usable."
        return (checked.token, list(zip(checked.files, checked.captions)),
                [[n, c] for n, c in zip(checked.names, checked.captions)], f"{len(checked.files)} images. {shown}")

    def start(token="", table=None, preset=DEFAULT_PRESET, method="(preset)", name="", trigger="", steps=0):
        rows = table.values.tolist() if isinstance(table, pd.DataFrame) else (table or [])
        try:
            run, position = trainer.start(token, [row[1] for row in rows], preset, name, trigger, int(steps or 0),
                                          None if method == "(preset)" else method)
        except RequestError as exc:
            raise gr.Error(str(exc)) from exc
        return run, f"queued: position {position}" if position else "starting", gr.Timer(active=True)

    def status(run=""):
        if not run:
            return gr.update(), gr.update(), gr.update(), gr.update(), gr.Timer(active=False)
        try:
            current = trainer.status(run)
        except RequestError as exc:
            raise gr.Error(str(exc)) from exc
        text = f"**{current.state}** step {current.step}/{current.steps}" + (f": {current.message}"
                                                                               if current.message else "")
        curve = pd.DataFrame(current.losses, columns=["step", "loss"])
        shown = list(zip(current.samples, current.sample_prompts)) if current.samples else []
        return (text, gr.Slider(maximum=max(1, current.steps), value=current.step), curve, shown,
                gr.Timer(active=not current.finished))

    def cancel(run=""):
        try:
            current = trainer.cancel(run)
        except RequestError as exc:
            raise gr.Error(str(exc)) from exc
        return f"**{current.state}**: {current.message}"

    check_btn.click(check, files, [token, gallery, captions, notes], api_name="train_check")
    start_btn.click(start, [token, captions, preset, method, name, trigger, steps], [run_id, state, timer],
                    api_name="train_start")
    timer.tick(status, run_id, [state, bar, losses, samples, timer], api_name="train_status", queue=False)
    cancel_btn.click(cancel, run_id, state, api_name="train_cancel", queue=False)
