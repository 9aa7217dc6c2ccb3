"""The trainer's user actions over plain values (for the Train tab, or any other front end)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from t2i.models.access import check_server_model
from t2i.request import RequestError
from t2i.safety.gate import SafetyGate
from t2i.settings import Settings

from t2i.train.config import config_from_preset
from t2i.train.dataset import Dataset, DatasetLimits, load_saved, prepare_dataset
from t2i.train.hub import push_run
from t2i.train.runner import RunStatus, TrainingRunner

TOKEN_CHARS = set("0123456789abcdef")


@dataclass
class CheckedDataset:
    """A checked upload, saved under a token, shown as a gallery with editable captions."""

    token: str
    files: list[str]  # the saved PNGs, in dataset order
    names: list[str]  # the uploaded file names
    captions: list[str]
    notes: list[str]


class TrainingStudio:
    """Checks uploads, starts/cancels/resumes runs, reports their status and pushes finished LoRAs to the Hub;
    sample images pass the safety gate."""

    def __init__(self, settings: Settings, safety: SafetyGate, runner: TrainingRunner | None = None):
        self.settings = settings
        self.safety = safety
        self.runner = runner or TrainingRunner(settings)
        self.uploads = settings.data_dir / "training-uploads"
        self._screened: dict[str, bool] = {}

    def check_upload(self, paths: list[str]) -> CheckedDataset:
        """Decode and check uploaded files (images, .txt captions, zips); save them under a new token."""
        if not paths:
            raise RequestError("upload some images (and optional same-name .txt captions, or a zip) first")
        limits = DatasetLimits(max_file_bytes=self.settings.max_upload_mb << 20)
        dataset = prepare_dataset([Path(p) for p in paths], limits, safety=self.safety)
        token = secrets.token_hex(8)
        folder = dataset.save(self.uploads / token)
        files = [str(folder / f"{i:04d}.png") for i in range(len(dataset.items))]
        return CheckedDataset(token, files, [i.name for i in dataset.items], [i.caption for i in dataset.items],
                              dataset.notes)

    def start(self, token: str, captions: list[str], preset: str, name: str, trigger: str = "",
              steps: int | None = None, method: str | None = None, **settings) -> tuple[str, int]:
        """Start (or queue) a training of a checked upload with edited captions; returns (run id, queue position).
        `settings` are further TrainingConfig fields (checkpoint_every, rank, ...)."""
        dataset = self._checked(token)
        if len(captions) != len(dataset.items):
            raise RequestError(f"{len(captions)} captions for {len(dataset.items)} images")
        items = [replace(item, caption=" ".join(str(text or "").split())) for item, text in zip(dataset.items, captions)]
        if "base_model" in settings:  # a web request: only the models this server offers (see model_access)
            if not isinstance(settings["base_model"], str):
                raise RequestError(f"base model must be a model name or hub id; got {settings['base_model']!r}")
            check_server_model(settings["base_model"], self.settings)
        overrides = {"name": name, "trigger": trigger, **settings}
        if steps:
            overrides["steps"] = int(steps)
        if method:
            overrides["method"] = method
        config = config_from_preset(preset, **overrides)
        run_id = self.runner.create_run(Dataset(items, dataset.notes), config)
        return run_id, self.runner.submit(run_id)

    def status(self, run_id: str) -> RunStatus:
        """The run's status (a stopped run's message says how to resume it); flagged sample images left out."""
        status = self.runner.status(run_id)
        status.samples = [path for path in status.samples if self._sample_ok(path)]
        if status.resumable:
            status.message = "; ".join(filter(None, [status.message, f"press Resume to continue {status.resume_point}"]))
        return status

    def resume(self, run_id: str) -> int:
        """Resume an interrupted, cancelled or crashed run from its newest checkpoint; its queue position (0: started).
        A RequestError when the run is unknown, finished, failed for good, or already queued or running."""
        return self.runner.resume(run_id)

    def resumable_runs(self, run_ids: Iterable[str]) -> list[RunStatus]:
        """The runs among `run_ids` that Resume can continue, newest first (unknown ids are left out). Callers
        name the runs they know: run ids are unguessable, and listing every run would show one user's runs,
        and their datasets, to the next."""
        wanted = set(run_ids)
        return [run for run in self.runner.runs() if run.run_id in wanted and run.resumable]

    def push(self, run_id: str, repo_id: str, token: str = "", private: bool = False) -> str:
        """Upload a finished run's LoRA to the Hugging Face Hub repo `repo_id` (token: given, or HF_TOKEN);
        returns the repo URL."""
        return push_run(self.runner, run_id, repo_id, token, private)

    def cancel(self, run_id: str) -> RunStatus:
        """Cancel a queued or running training."""
        self.runner.cancel(run_id)
        return self.status(run_id)

    def _checked(self, token: str) -> Dataset:
        if not token or set(token) - TOKEN_CHARS or not (self.uploads / token / "manifest.json").exists():
            raise RequestError("check the uploaded images first")
        return load_saved(self.uploads / token)

    def _sample_ok(self, path: str) -> bool:
        if path not in self._screened:
            with Image.open(path) as image:
                self._screened[path] = not self.safety.screen_image(image.convert("RGB"), "training sample").flagged
        return self._screened[path]
