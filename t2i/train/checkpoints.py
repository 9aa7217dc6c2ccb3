"""LoRA training checkpoints: adapter weights, optimizer state, step and RNG state, written atomically.

A checkpoint is a folder `step-NNNNNN` that appears in one rename once complete, so a kill -9 at any moment
leaves either the previous checkpoint or the new one, never half of one. Only files this code wrote are read
back, and with `weights_only=True` (no code runs).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

KEEP = 2  # the newest checkpoints kept; older ones are deleted after a new one is complete


@dataclass
class Checkpoint:
    """What a run needs to continue exactly where it stopped."""

    step: int
    weights: dict[str, torch.Tensor]  # LoRA weights, "unet."/"text_encoder." prefixed peft keys
    optimizer: dict
    generator: torch.Tensor  # the state of the one torch.Generator that drives all training randomness


def save_checkpoint(folder: Path, checkpoint: Checkpoint) -> Path:
    """Write `folder/step-NNNNNN` atomically and prune older checkpoints."""
    final = folder / f"step-{checkpoint.step:06d}"
    tmp = folder / f".tmp-step-{checkpoint.step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in checkpoint.weights.items()}, str(tmp / "lora.safetensors"))
    torch.save({"optimizer": checkpoint.optimizer, "generator": checkpoint.generator}, tmp / "state.pt")
    (tmp / "step.json").write_text(json.dumps({"step": checkpoint.step}))
    for path in (tmp / "lora.safetensors", tmp / "state.pt", tmp / "step.json"):
        with open(path, "rb") as handle:  # on disk before the rename makes the checkpoint visible
            os.fsync(handle.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(folder.glob("step-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _newest_complete(folder: Path) -> Path | None:
    return next((path for path in sorted(folder.glob("step-*"), reverse=True) if (path / "step.json").exists()), None)


def latest_checkpoint_step(folder: Path) -> int:
    """The step of the newest complete checkpoint in `folder` (0: none), without loading it."""
    path = _newest_complete(folder)
    return json.loads((path / "step.json").read_text())["step"] if path else 0


def latest_checkpoint(folder: Path) -> Checkpoint | None:
    """The newest complete checkpoint in `folder`, or None when there is none."""
    path = _newest_complete(folder)
    if path is None:
        return None
    state = torch.load(path / "state.pt", weights_only=True, map_location="cpu")
    return Checkpoint(step=json.loads((path / "step.json").read_text())["step"],
                      weights=load_file(str(path / "lora.safetensors")), optimizer=state["optimizer"],
                      generator=state["generator"])
