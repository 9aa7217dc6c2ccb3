"""Training runs: one folder per run, a queue, one training process at a time, cancel, and status.

The trainer runs as a child process (`python -m t2i.train.lora_trainer`), never inside the web server; its
progress file is the only channel back. Across processes (the app and the CLI at once) the trainer itself
takes a machine-wide lock, so a second run waits and says so, and a lock on its run folder, so that one run is
never trained by two processes. An interrupted, cancelled or crashed run is resumed from its newest checkpoint.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from t2i.request import RequestError
from t2i.settings import Settings

from t2i.train.launch import trainer_command, trainer_environment
from t2i.train.resume import latest_checkpoint_step
from t2i.train.config import TrainingConfig
from t2i.train.dataset import Dataset

RUN_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[A-Za-z0-9_.-]{1,64}-[0-9a-f]{6,16}$")  # older runs: 6 hex digits
RUN_LOCK = "run.lock"  # held by a run's trainer process for its whole life, also while it waits for its turn
BUSY_EXIT = 4  # the trainer's exit code when another process already trains the run (it writes nothing)


@dataclass
class RunStatus:
    """What a run is doing, read from its progress file: for progress bars, loss curves and sample galleries."""

    run_id: str
    state: str  # queued, waiting, running, done, failed, cancelled, interrupted
    queue_position: int = 0  # 1 = next to start; 0 when not queued
    step: int = 0
    steps: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)  # the newest sample images
    sample_prompts: list[str] = field(default_factory=list)
    message: str = ""
    lora: str = ""  # the finished .safetensors
    final_loss: float | None = None
    name: str = ""  # the LoRA's name (config.json)
    checkpoint: int = 0  # step of the newest complete checkpoint on disk; 0: none
    resumed_from: int | None = None  # the checkpoint step the newest attempt continued from
    resumable: bool = False  # stopped (interrupted, cancelled, crashed) and worth starting again

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled", "interrupted")

    @property
    def resume_point(self) -> str:
        """Where a resume continues from, in words."""
        if self.checkpoint:
            return f"from the checkpoint at step {self.checkpoint}"
        return "from step 0 (it stopped before its first checkpoint)"


def read_status(folder: Path, run_id: str) -> RunStatus:
    """Status from a run folder's progress.jsonl (the events of the newest attempt count)."""
    status = RunStatus(run_id, "interrupted", checkpoint=latest_checkpoint_step(folder / "checkpoints"),
                       resumable=True)
    if (folder / "config.json").exists():
        status.name = json.loads((folder / "config.json").read_text()).get("name", "")
    progress = folder / "progress.jsonl"
    events = [json.loads(line) for line in progress.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if progress.exists() else []
    for event in events:
        kind = event["event"]
        if kind == "start":
            status.losses = [pair for pair in status.losses if pair[0] <= event["step"]]
            status.step, status.steps, status.message = event["step"], event["steps"], ""
            status.state, status.resumable, status.resumed_from = "interrupted", True, None
            if event.get("resumed"):
                status.resumed_from = event["step"]
                status.message = f"resumed from the checkpoint at step {event['step']}"
        elif kind == "step":
            status.step, status.steps = event["step"], event["steps"]
            if event["loss"] is not None:
                status.losses.append((event["step"], event["loss"]))
        elif kind in ("sample", "done") and event.get("images"):
            status.samples, status.sample_prompts = event["images"], event["prompts"]
        elif kind in ("note", "waiting"):
            status.message = event["message"]
        if kind == "done":
            status.state, status.lora, status.message = "done", event["lora"], f"saved {event['lora']}"
            status.final_loss, status.resumable = event.get("final_loss"), False
            if status.resumed_from is not None:
                status.message += f" (resumed from the checkpoint at step {status.resumed_from})"
        elif kind == "error":
            # the trainer's own errors (NaN losses, an unusable model) would recur; a crash may not
            status.state, status.message, status.resumable = "failed", event["message"], bool(event.get("resumable"))
    if (folder / "cancelled").exists() and status.state != "done":
        status.state, status.message, status.resumable = "cancelled", f"cancelled at step {status.step}", True
    return status


def trained_elsewhere(folder: Path) -> bool:
    """Whether a trainer process holds the run's lock (it trains the run, or waits for its turn)."""
    path = folder / RUN_LOCK
    if not path.exists():
        return False
    probe = FileLock(path, preserve_lock_file=True)
    try:
        probe.acquire(timeout=0)
    except Timeout:
        return True
    probe.release()
    return False


class TrainingRunner:
    """Creates run folders, queues them, starts one trainer process at a time and reports their status."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.root = self.settings.data_dir / "training"
        self._queue: list[str] = []
        self._current: str | None = None
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def create_run(self, dataset: Dataset, config: TrainingConfig) -> str:
        """A new run folder holding the checked dataset and the config; returns its id."""
        config.validate()
        if (self.settings.lora_dir / f"{config.name}.safetensors").exists():
            raise RequestError(f"the LoRA library already has {config.name!r}; choose another name")
        # 64 random bits: the run folder is served to the page, so its name must not be guessable
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{config.name}-{secrets.token_hex(8)}"
        folder = self.folder(run_id)
        folder.mkdir(parents=True)
        dataset.save(folder / "dataset")
        (folder / "config.json").write_text(config.to_json())
        return run_id

    def folder(self, run_id: str) -> Path:
        """The folder of a run; an id that is not one of ours is a RequestError (no path tricks)."""
        if not RUN_ID.match(run_id or ""):
            raise RequestError(f"unknown training run {run_id!r}")
        return self.root / run_id

    def submit(self, run_id: str) -> int:
        """Queue a run (new, or interrupted/cancelled to resume it); returns its queue position (0: started)."""
        folder = self.folder(run_id)
        if not (folder / "config.json").exists():
            raise RequestError(f"unknown training run {run_id!r}")
        with self._lock:
            if run_id == self._current or run_id in self._queue:
                raise RequestError(f"run {run_id} is already queued or running")
            (folder / "cancelled").unlink(missing_ok=True)
            self._queue.append(run_id)
            self._start_next()
            return 0 if self._current == run_id else self._queue.index(run_id) + 1

    def resume(self, run_id: str) -> int:
        """Queue a stopped run again; it continues from its newest checkpoint. Returns its queue position."""
        status = self.status(run_id)
        if status.state in ("queued", "waiting", "running"):
            raise RequestError(f"run {run_id} is already {status.state}")
        if status.state == "done":
            raise RequestError(f"run {run_id} has already finished: {status.lora}")
        if not status.resumable:
            raise RequestError(f"run {run_id} failed and resuming would fail the same way ({status.message}); "
                               "start a new run with other settings")
        if (self.settings.lora_dir / f"{status.name}.safetensors").exists():
            raise RequestError(f"the LoRA library already has {status.name!r}; move that file away to resume "
                               f"run {run_id}")
        return self.submit(run_id)

    def runs(self) -> list[RunStatus]:
        """Every run on this machine, newest first."""
        folders = sorted(self.root.glob("*"), reverse=True) if self.root.exists() else []
        return [self.status(f.name) for f in folders if RUN_ID.match(f.name) and (f / "config.json").exists()]

    def cancel(self, run_id: str, wait_s: float = 10.0) -> None:
        """Stop a running run (its checkpoints stay, so it can be resumed) or take it out of the queue; waits up
        to `wait_s` for the trainer to exit, so that the status read next is final and Resume works at once."""
        folder = self.folder(run_id)
        with self._lock:
            (folder / "cancelled").touch()
            if run_id in self._queue:
                self._queue.remove(run_id)
            elif run_id == self._current and self._process is not None:
                self._process.terminate()
        deadline = time.time() + wait_s
        while self.is_active(run_id) and time.time() < deadline:
            time.sleep(0.05)

    def status(self, run_id: str) -> RunStatus:
        """The run's status, with its queue position while it waits."""
        folder = self.folder(run_id)
        if not folder.exists():
            raise RequestError(f"unknown training run {run_id!r}")
        status = read_status(folder, run_id)
        with self._lock:
            if run_id in self._queue:
                status.state, status.queue_position = "queued", self._queue.index(run_id) + 1
                status.message = f"queued: position {status.queue_position}"
            elif run_id == self._current and status.state == "interrupted":  # its process is alive
                status.state = "waiting" if status.message.startswith("another training") else "running"
            elif run_id != self._current and status.state != "done" and trained_elsewhere(folder):
                status.state, status.message = "running", "trained by another process on this machine"
            if status.state in ("queued", "waiting", "running") or run_id == self._current:
                status.resumable = False  # its process is still alive (also a cancelled one, for a moment)
        return status

    def is_active(self, run_id: str) -> bool:
        """Whether a run is queued or its process is still alive."""
        with self._lock:
            return run_id == self._current or run_id in self._queue

    def wait(self, run_id: str, poll_s: float = 0.5, timeout_s: float | None = None) -> RunStatus:
        """Block until the run has finished (for the CLI and tests)."""
        deadline = None if timeout_s is None else time.time() + timeout_s
        while True:
            status = self.status(run_id)
            if status.finished and not self.is_active(run_id):
                return status
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(f"training run {run_id} did not finish in {timeout_s} s")
            time.sleep(poll_s)

    def _start_next(self) -> None:
        """Start the next queued run if none is running (the lock is held)."""
        if self._current is not None or not self._queue:
            return
        run_id = self._queue.pop(0)
        folder = self.folder(run_id)
        log = open(folder / "trainer.log", "ab")
        command = trainer_command(folder, self.settings.lora_dir, self.settings)  # one process, or N (Accelerate)
        self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                         env=trainer_environment(self.settings))  # t2i is installed
        log.close()
        self._current = run_id
        threading.Thread(target=self._watch, args=(run_id, self._process), daemon=True).start()

    def _watch(self, run_id: str, process: subprocess.Popen) -> None:
        code = process.wait()
        folder = self.folder(run_id)
        if code not in (0, BUSY_EXIT) and not (folder / "cancelled").exists() \
                and read_status(folder, run_id).state != "failed":
            if code < 0:  # killed by a signal (OOM killer, kill -9): resumable, not a failure of the run
                event = {"event": "note", "message": f"the trainer was killed (signal {-code})"}
            else:  # a crash the trainer did not foresee (out of memory, disk full, ...): worth resuming
                tail = (folder / "trainer.log").read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                event = {"event": "error", "message": f"the trainer exited with code {code}: {tail[0]}",
                         "resumable": True}
            with open(folder / "progress.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps({**event, "time": time.time()}) + "\n")
        with self._lock:
            self._current, self._process = None, None
            self._start_next()
