"""Atomic, resumable training checkpoints: weights as safetensors, optimizer/EMA state via torch.save.

Only checkpoints this code wrote itself are read back, and with `weights_only=True` (no code runs).

Kept, not Accelerate's save_state/load_state (which the LoRA trainer uses, t2i/train/resume.py): these are the
shipped model's training recipe, and its scripts build no Accelerator. They draw each batch from (seed, step), so
there is no generator to checkpoint; they checkpoint several stages under their own folder names, read a stage's
weights back alone for export (`load_checkpoint(folder, {"unet": unet}, None, ema)`), and load one stage's EMA into
another's model (refine.py); save_state would bring a whole-run unit and pickled RNG files for none of that. A
change here would also have to reproduce the shipped weights bit for bit (tests/test_training.py) to be safe.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def writable_dir(folder: Path) -> str | None:
    """Create `folder` if needed; return a message saying why it cannot be written, or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return f"cannot write to {folder}: {exc.strerror or exc}"
    return None


def save_checkpoint(folder: Path, models: dict, optimizer, step: int, ema=None) -> None:
    """Write a checkpoint to a temporary folder, then swap it in, so a kill never leaves half a checkpoint."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, model in models.items():
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / f"{name}.safetensors"))
    state = {"optimizer": optimizer.state_dict()}
    if ema is not None:
        state["ema"] = ema.state_dict()
    torch.save(state, tmp / "state.pt")
    (tmp / "step.json").write_text(json.dumps({"step": step}))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: Path, models: dict, optimizer=None, ema=None) -> int:
    """Restore a checkpoint if there is one; return the step to continue from (0 when starting fresh)."""
    old = folder.with_name(folder.name + ".old")
    if not folder.exists() and old.exists():  # killed between the two renames of save_checkpoint
        os.replace(old, folder)
    if not (folder / "step.json").exists():
        return 0
    for name, model in models.items():
        model.load_state_dict(load_file(str(folder / f"{name}.safetensors")))
    state = torch.load(folder / "state.pt", weights_only=True, map_location="cpu")
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    step = json.loads((folder / "step.json").read_text())["step"]
    print(f"resuming {folder.name} from step {step}")
    return step
