"""Who may train: one process per run (the run folder's lock) and one training per machine (the machine's lock),
taken by the main process of a multi-process launch only."""

from __future__ import annotations

import contextlib
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from filelock import FileLock, Timeout

from t2i.settings import Settings
from t2i.train.progress_log import ProgressLog
from t2i.train.runner import RUN_LOCK


class RunBusy(Exception):
    """Another process already trains this run."""


@contextlib.contextmanager
def machine_lock(log: ProgressLog):
    """One training at a time per machine, across processes (web server, CLI): a blocking file lock."""
    lock = FileLock(Settings().train_lock, preserve_lock_file=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.write("waiting", message="another training is running on this machine")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold the run folder's lock, so that no second process trains (and later re-exports) the same run."""
    lock = FileLock(run_dir / RUN_LOCK, preserve_lock_file=True)
    try:  # a status probe holds it for microseconds; a trainer holds it for good
        lock.acquire(timeout=1.0, poll_interval=0.05)
    except Timeout:
        raise RunBusy(f"run {run_dir.name} is already being trained by another process") from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def main_process_locks(accelerator: Accelerator, run_dir: Path, log: ProgressLog):
    """The run's lock, then the machine's, taken by the main process only; the other ranks wait for it, and leave
    with it when the run is busy."""
    with contextlib.ExitStack() as locks:
        busy = ""
        if accelerator.is_main_process:
            try:
                locks.enter_context(run_lock(run_dir))
            except RunBusy as exc:
                busy = str(exc)
        busy = broadcast_object_list([busy])[0]
        if busy:
            raise RunBusy(busy)
        if accelerator.is_main_process:
            locks.enter_context(machine_lock(log))
        accelerator.wait_for_everyone()
        yield
