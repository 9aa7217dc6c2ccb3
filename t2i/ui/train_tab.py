"""The Train tab: upload -> gallery with editable captions -> preset/name/trigger -> start/cancel/resume, live
progress, and a push of the finished LoRA to the Hugging Face Hub.

Training runs in its own process (t2i.train.runner); this tab only reads its progress file, once a second.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import gradio as gr
import pandas as pd

from t2i.request import RequestError
from t2i.settings import Settings
from t2i.studio import Studio
from t2i.models.families import FAMILIES
from t2i.train.config import (BASE_QUANTIZATIONS, DEFAULT_PRESET, LR_SCHEDULERS, METHODS, OPTIMIZERS, PRESETS,
                              TIMESTEP_BIASES, form_overrides, preset_config)
from t2i.train.actions import TrainingStudio
from t2i.train.family_training import TRAINABLE_FAMILIES
from t2i.train.check_vae import file_detail_notes  # fine detail that the base model's VAE loses

from t2i.ui.model_family import model_family
from t2i.ui.uploads import track_uploads

REMEMBERED_RUNS = 50  # run ids a browser keeps; the oldest are forgotten first
# the Advanced accordion: TrainingConfig field -> its widget and options (the value shown is the chosen preset's)
ADVANCED = {
    "learning_rate": (gr.Number, {"label": "Learning rate (Prodigy: 1.0)", "minimum": 0}),
    "text_encoder_lr": (gr.Number, {"label": "Text encoder learning rate (Prodigy: 1.0)", "minimum": 0}),
    "optimizer": (gr.Dropdown, {"label": "Optimizer", "choices": list(OPTIMIZERS),
                                "info": "adamw8bit: 8-bit states (bitsandbytes); prodigy: finds its own step size"}),
    "lr_scheduler": (gr.Dropdown, {"label": "Learning-rate schedule", "choices": list(LR_SCHEDULERS)}),
    "lr_warmup_steps": (gr.Number, {"label": "Warmup steps", "precision": 0, "minimum": 0}),
    "min_snr_gamma": (gr.Number, {"label": "Min-SNR gamma (0 = off, 5 is usual)", "minimum": 0}),
    "noise_offset": (gr.Number, {"label": "Noise offset (0 = off, 0.05-0.1)", "minimum": 0}),
    "ema_decay": (gr.Number, {"label": "EMA decay of the LoRA weights (0 = off, e.g. 0.999)", "minimum": 0}),
    "shuffle_tags": (gr.Checkbox, {"label": "Shuffle caption tags (comma-separated)"}),
    "keep_tokens": (gr.Number, {"label": "Tags kept in place when shuffling", "precision": 0, "minimum": 0}),
    "timestep_bias": (gr.Dropdown, {"label": "Timestep bias", "choices": list(TIMESTEP_BIASES),
                                    "info": "low_noise: more training on fine detail and texture"}),
    "timestep_bias_multiplier": (gr.Number, {"label": "Timestep bias strength", "minimum": 0}),
    "base_quantization": (gr.Dropdown, {"label": "Quantised base (QLoRA)", "choices": list(BASE_QUANTIZATIONS),
                                        "info": "the frozen model's weights: int8 (CPU and GPU) or nf4 (CUDA, "
                                                "bitsandbytes); the LoRA stays full precision"}),
    "rank": (gr.Number, {"label": "LoRA rank (network dim)", "precision": 0, "minimum": 1}),
    "alpha": (gr.Number, {"label": "LoRA alpha (network alpha; the LoRA is scaled by alpha / rank)", "minimum": 0}),
    "prior_loss_weight": (gr.Number, {"label": "Prior-preservation loss weight (the class images' share)",
                                      "minimum": 0}),
}


def browser_secret(settings: Settings) -> str:
    """T2I_BROWSER_SECRET, or a secret made once and kept (mode 600) in the data folder: Gradio would otherwise
    make a new one at every start, and browsers could no longer read their list of runs after a restart."""
    if settings.browser_secret:
        return settings.browser_secret
    path = settings.data_dir / "browser-secret"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(secrets.token_hex(16))
    except FileExistsError:
        pass
    return path.read_text().strip()


def _run_ids(known) -> list[str]:
    """The run ids in a browser's stored list; anything else a client sends counts as no runs."""
    return [r for r in known if isinstance(r, str)] if isinstance(known, list) else []


def create_train_tab(studio: Studio) -> None:
    """Build the tab inside the current Blocks."""
    trainer = TrainingStudio(studio.settings, studio.engine.safety)
    gr.Markdown("Pick 5-20 images of one style or subject (same-name .txt files or the table below give captions), "
                "a name and a trigger word. The finished LoRA appears in the Generate tab's LoRA list.")
    with gr.Row():
        with gr.Column(scale=2):
            files = gr.File(label="Images, .txt captions, NAME.mask.png loss masks or a .zip", file_count="multiple",
                            value=None,
                            file_types=["image", ".txt", ".zip"], type="filepath", elem_id="train_files")
            check_btn = gr.Button("Check images", elem_id="train_check")
            notes = gr.Markdown("", elem_id="train_notes")
            gallery = gr.Gallery(label="Dataset", columns=6, height=240, interactive=False, elem_id="train_gallery")
            captions = gr.Dataframe(headers=["file", "caption"], datatype=["str", "str"], value=[["", ""]],
                                    interactive=True, label="Captions (editable)", elem_id="train_captions")
            token = gr.State("")
            # the ids of the runs this browser started or resumed: only those are offered for Resume, so one
            # visitor never sees (or resumes) another's runs; the id itself is the key to a run
            my_runs = gr.BrowserState([], storage_key="t2i-training-runs", secret=browser_secret(studio.settings))
        with gr.Column(scale=1):
            trainable = ", ".join(FAMILIES[family].label for family in TRAINABLE_FAMILIES)
            with gr.Row(equal_height=True):
                base_model = gr.Dropdown(label="Base model", choices=trainable_models(studio), value="embedded",
                                         allow_custom_value=True, info=f"models that can train: {trainable}",
                                         elem_id="train_base_model", scale=4)
                models_btn = gr.Button("Refresh", size="sm", scale=0, min_width=80, elem_id="train_models_refresh")
            family = gr.Dropdown(label="LoRA for", value=lora_family("embedded", studio),
                                 choices=[("the base model's family", "")] +
                                         [(FAMILIES[f].label, f) for f in TRAINABLE_FAMILIES],
                                 info="set from the base model; a base model of another family is refused before "
                                      "training", elem_id="train_family")
            preset = gr.Dropdown(label="Preset", choices=list(PRESETS), value=DEFAULT_PRESET, elem_id="train_preset")
            method = gr.Dropdown(label="Method", choices=["(preset)", *METHODS], value="(preset)")
            name = gr.Textbox(label="Name", value="", placeholder="my_style", elem_id="train_name")
            trigger = gr.Textbox(label="Trigger word", value="", placeholder="a rare word, e.g. zqx",
                                 elem_id="train_trigger")
            steps = gr.Number(label="Steps (0 = preset)", value=0, precision=0, elem_id="train_steps")
            checkpoint_every = gr.Number(label="Checkpoint every N steps (0 = preset)", value=0, precision=0,
                                         elem_id="train_checkpoint_every")
            class_prompts = gr.Textbox(
                label="Regularisation prompts, one per line (empty: the captions without the trigger)", value="",
                lines=2, placeholder="a red star\na blue circle", elem_id="train_class_prompts")
            with gr.Accordion("Advanced", open=False, elem_id="train_advanced"):
                advanced = {field_name: widget(value=getattr(PRESETS[DEFAULT_PRESET], field_name),
                                               elem_id=f"train_{field_name}", **options)
                            for field_name, (widget, options) in ADVANCED.items()}
                # the preset whose values the boxes above show: an API call naming another preset and leaving a box
                # at the default preset's value gets its own preset's value there
                filled_from = gr.Textbox(value=DEFAULT_PRESET, visible=False)
            with gr.Row():
                start_btn = gr.Button("Start training", variant="primary", elem_id="train_start")
                cancel_btn = gr.Button("Cancel", elem_id="train_cancel")
            run_id = gr.Textbox(label="Run", value="", interactive=False, elem_id="train_run")
            state = gr.Markdown("", elem_id="train_state")
            bar = gr.HTML(progress_bar(0, 0), label="Progress", elem_id="train_progress")  # shown, never edited
            with gr.Row():
                resumable = gr.Dropdown(label="Your stopped runs (empty: the run above)", choices=[],
                                        value="", allow_custom_value=True, elem_id="train_resumable", scale=3)
                resume_btn = gr.Button("Resume", elem_id="train_resume", scale=1)
            with gr.Accordion("Push to the Hugging Face Hub", open=False):
                repo = gr.Textbox(label="Repo id", value="", placeholder="your-name/my-lora")
                token_box = gr.Textbox(label="Token with write access (empty: the server's HF_TOKEN)", value="",
                                       type="password")
                private = gr.Checkbox(label="Private repo", value=False)
                push_btn = gr.Button("Push the finished LoRA", elem_id="train_push")
                pushed = gr.Markdown("")
    with gr.Row():
        losses = gr.LinePlot(value=pd.DataFrame({"step": [], "loss": []}), x="step", y="loss", label="Loss",
                             height=240)
        # whole images (not cropped to square tiles), each captioned with the prompt that made it
        samples = gr.Gallery(label="Samples (with / without the trigger)", columns=4, height=320,
                             object_fit="contain", interactive=False, elem_id="train_samples")
    timer = gr.Timer(1.0, active=False)

    def check(paths=None, chosen="embedded", request: gr.Request = None):
        track_uploads(studio, request, paths)
        try:
            checked = trainer.check_upload(paths or [])
        except RequestError as exc:
            raise gr.Error(str(exc)) from exc
        notes = checked.notes + file_detail_notes(checked.files, chosen or "embedded", studio.settings)
        shown = "\n".join(f"- {note}" for note in notes) or "All images are usable."
        return (checked.token, list(zip(checked.files, checked.captions)),
                [[n, c] for n, c in zip(checked.names, checked.captions)], f"{len(checked.files)} images. {shown}")

    def fill(chosen=DEFAULT_PRESET, for_family=""):
        """The Advanced boxes show the chosen preset's values for the chosen family."""
        shown = preset_config(chosen if chosen in PRESETS else DEFAULT_PRESET, for_family or "")
        return [getattr(shown, field_name) for field_name in ADVANCED] + [chosen]

    defaults = PRESETS[DEFAULT_PRESET]  # what the Advanced boxes show until another preset is chosen

    def models():
        """The base-model list as the model folder is now (a model dropped there since the page was built)."""
        return gr.update(choices=trainable_models(studio))

    def start(token="", table=None, preset=DEFAULT_PRESET, method="(preset)", name="", trigger="", steps=0,
              checkpoint_every=0, class_prompts="", base_model="embedded", family="", filled=DEFAULT_PRESET,
              learning_rate=defaults.learning_rate, text_encoder_lr=defaults.text_encoder_lr,
              optimizer=defaults.optimizer, lr_scheduler=defaults.lr_scheduler,
              lr_warmup_steps=defaults.lr_warmup_steps,
              min_snr_gamma=defaults.min_snr_gamma, noise_offset=defaults.noise_offset, ema_decay=defaults.ema_decay,
              shuffle_tags=defaults.shuffle_tags, keep_tokens=defaults.keep_tokens,
              timestep_bias=defaults.timestep_bias, timestep_bias_multiplier=defaults.timestep_bias_multiplier,
              base_quantization=defaults.base_quantization, rank=defaults.rank, alpha=defaults.alpha,
              prior_loss_weight=defaults.prior_loss_weight):
        # named one by one (in ADVANCED's order) so that API callers see the field names
        options = dict(learning_rate=learning_rate, text_encoder_lr=text_encoder_lr, optimizer=optimizer,
                       lr_scheduler=lr_scheduler, lr_warmup_steps=lr_warmup_steps, min_snr_gamma=min_snr_gamma,
                       noise_offset=noise_offset, ema_decay=ema_decay, shuffle_tags=shuffle_tags,
                       keep_tokens=keep_tokens, timestep_bias=timestep_bias,
                       timestep_bias_multiplier=timestep_bias_multiplier, base_quantization=base_quantization,
                       rank=rank, alpha=alpha, prior_loss_weight=prior_loss_weight)
        rows = table.values.tolist() if isinstance(table, pd.DataFrame) else (table or [])
        extra = {"checkpoint_every": int(checkpoint_every)} if checkpoint_every else {}
        if base_model:
            extra["base_model"] = base_model
        if family:
            extra["family"] = family
        if lines := [line.strip() for line in str(class_prompts or "").splitlines() if line.strip()]:
            extra["class_prompts"] = tuple(lines)
        try:
            extra.update(form_overrides(options, filled, preset, family or ""))
            run, position = trainer.start(token, [row[1] for row in rows], preset, name, trigger, int(steps or 0),
                                          None if method == "(preset)" else method, **extra)
        except RequestError as exc:
            raise gr.Error(str(exc)) from exc
        return run, f"queued: position {position}" if position else "starting", gr.Timer(active=True)

    def remember(run="", known=()):
        """Add the run shown in the Run box to the browser's list of its runs."""
        known = [r for r in _run_ids(known) if r != run]
        return [*known, run][-REMEMBERED_RUNS:] if run else known

    def stopped_runs(selected="", known=()):
        """The dropdown of resumable runs among `selected` and the browser's `known` runs, `selected` picked when
        it is one of them."""
        runs = trainer.resumable_runs({selected, *_run_ids(known)})
        choices = [(f"{r.name}: step {r.step}/{r.steps}, {r.state} ({r.run_id})", r.run_id) for r in runs]
        return gr.Dropdown(choices=choices, value=selected if selected in [r.run_id for r in runs] else "")

    def resume(picked="", shown=""):
        run = picked or shown
        try:
            position = trainer.resume(run)
        except RequestError as exc:
            raise gr.Error(str(exc)) from exc
        state_text = f"queued: position {position}" if position else "resuming"
        return run, state_text, gr.Timer(active=True), stopped_runs()

    def push(run="", repo_id="", token="", private=False):
        try:
            url = trainer.push(run, repo_id, token, bool(private))
        except RequestError as exc:
            raise gr.Error(str(exc)) from exc
        return f"Uploaded to {url}"

    def status(run=""):
        if not run:
            return gr.update(), gr.update(), gr.update(), gr.update(), gr.Timer(active=False), gr.update()
        try:
            current = trainer.status(run)
        except RequestError as exc:
            raise gr.Error(str(exc)) from exc
        message = _without_server_path(current)
        text = f"**{current.state}** step {current.step}/{current.steps}" + (f": {message}" if message else "")
        curve = pd.DataFrame(current.losses, columns=["step", "loss"])
        shown = list(zip(current.samples, current.sample_prompts)) if current.samples else []
        return (text, progress_bar(current.step, current.steps), curve, shown,
                gr.Timer(active=not current.finished),
                stopped_runs(run) if current.finished and current.resumable else gr.update())

    def cancel(run=""):
        try:
            current = trainer.cancel(run)
        except RequestError as exc:
            raise gr.Error(str(exc)) from exc
        return f"**{current.state}**: {current.message}", stopped_runs(run)

    # events that can fail are queued (an unqueued gr.Error shows no message) with their progress shown only in the
    # notes or state line, so a failure is a message and never an "Error" badge over the form's widgets
    check_btn.click(check, [files, base_model], [token, gallery, captions, notes], api_name="train_check",
                    show_progress_on=notes)
    # choosing a base model sets the family its LoRA is for, which refills the preset's boxes (below)
    base_model.change(lambda chosen="embedded": lora_family(chosen, studio), base_model, family,
                      api_visibility="private", queue=False)
    models_btn.click(models, None, base_model, api_name="train_models", queue=False)
    gr.on(None, models, None, base_model, api_visibility="private", queue=False)  # on page load: the list now
    for chooser in (preset, family):
        chooser.change(fill, [preset, family], [*advanced.values(), filled_from], api_visibility="private",
                       queue=False)
    start_btn.click(start, [token, captions, preset, method, name, trigger, steps, checkpoint_every, class_prompts,
                            base_model, family, filled_from, *advanced.values()],
                    [run_id, state, timer], api_name="train_start", show_progress_on=state)
    timer.tick(status, run_id, [state, bar, losses, samples, timer, resumable], api_name="train_status",
               show_progress="hidden")
    cancel_btn.click(cancel, run_id, [state, resumable], api_name="train_cancel", show_progress="hidden")
    run_id.change(remember, [run_id, my_runs], my_runs, api_name="train_remember", queue=False)
    # a lookup that cannot fail on user input: answered at once, outside the queue, as the list opens
    resumable.focus(stopped_runs, [resumable, my_runs], resumable, api_name="train_runs", show_progress="hidden",
                    queue=False)
    resume_btn.click(resume, [resumable, run_id], [run_id, state, timer, resumable], api_name="train_resume",
                     show_progress="hidden")
    push_btn.click(push, [run_id, repo, token_box, private], pushed, api_name="train_push", show_progress_on=pushed)


def trainable_models(studio: Studio) -> list[tuple[str, str]]:
    """The models offered as a base: those whose family can train (told from their files, without loading them),
    each labelled with its family."""
    offered = []
    for name in studio.model_choices():
        family = model_family(name, studio.settings)
        if family in TRAINABLE_FAMILIES:
            offered.append((f"{name} ({FAMILIES[family].label})", name))
    return offered


def lora_family(model: str, studio: Studio) -> str:
    """The "LoRA for" value for a base model: its family when that can train; "" (the base model's family, found
    when the run loads it) when its files cannot tell, e.g. a hub id typed in."""
    family = model_family(model or "", studio.settings)
    return family if family in TRAINABLE_FAMILIES else ""


def _without_server_path(current) -> str:
    """A run's message with the finished LoRA named as the LoRA list shows it, not by where the server keeps it."""
    if not current.lora:
        return current.message
    return current.message.replace(current.lora, f"to the LoRA library as {Path(current.lora).stem}")


def progress_bar(step: int, steps: int) -> str:
    """A read-only progress bar for the training steps (a slider would look editable)."""
    return (f'<progress value="{step}" max="{max(1, steps)}" style="width: 100%"></progress>'
            f"<div>step {step} of {steps}</div>" if steps else "<div>no training running</div>")
