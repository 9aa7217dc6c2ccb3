"""LoRA training checkpoints: Accelerate's `save_state` / `load_state`, written atomically and pruned.

`accelerator.save_state` writes what a run needs to continue: the optimizer, the RNG states, and every object
registered with `register_for_checkpointing` (here the torch.Generator that drives all training randomness, through
`GeneratorState`). Its state hooks, registered by `LoraCheckpoints`, swap the whole-model file for the LoRA weights.

What Accelerate does not do, and this module keeps:
- atomic checkpoints: save_state writes straight into its folder, so a kill -9 mid-save would leave half of one.
  Here it writes `.tmp-step-NNNNNN`, syncs it to disk, and one rename makes it `step-NNNNNN`;
- pruning after the new checkpoint is complete (ProjectConfiguration's `total_limit` deletes before saving);
- the step readable without loading anything (`step.json`, for the runner's status), with the world size;
- with several processes, every rank's generator (`generators.safetensors`): each rank draws its own batches, so
  each continues its own sequence, and a checkpoint resumes only with the number of processes that wrote it;
- reading the checkpoints of earlier versions (lora.safetensors + state.pt), so a run interrupted before an upgrade
  still resumes.
Only checkpoints this code wrote are read back; Accelerate unpickles the registered objects' files.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from safetensors.torch import load_file, save_file

KEEP = 2  # the newest checkpoints kept; older ones are deleted after a new one is complete
LORA_FILE = "lora.safetensors"  # the LoRA weights, "unet."/"text_encoder." prefixed peft keys
GENERATORS_FILE = "generators.safetensors"  # each rank's generator state, "rank0", "rank1", ...


class WorldSizeChanged(Exception):
    """The checkpoint was written by another number of processes than this run has."""


class GeneratorState:
    """A torch.Generator as Accelerate checkpoints it (an object with state_dict / load_state_dict)."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state_dict(self) -> dict:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["state"])


class LoraCheckpoints:
    """A LoRA run's checkpoints in `folder`: the LoRA weights (not the whole UNet), the optimizer, the generator."""

    def __init__(self, accelerator: Accelerator, folder: Path, weights: Callable[[], dict[str, torch.Tensor]],
                 restore: Callable[[dict[str, torch.Tensor]], None], optimizer, generator: torch.Generator):
        self.accelerator, self.folder, self.weights, self.restore = accelerator, folder, weights, restore
        self.optimizer, self.generator = optimizer, generator
        accelerator.register_for_checkpointing(GeneratorState(generator))
        accelerator.register_save_state_pre_hook(self._save_lora)
        accelerator.register_load_state_pre_hook(self._load_lora)

    def _save_lora(self, models, model_weights: list, folder: str) -> None:
        model_weights.clear()  # the whole UNet's state dict: gigabytes for a real model, whose base never changes
        if not self.accelerator.is_main_process:  # every rank holds the same weights; one writes them
            return
        weights = {k: v.detach().contiguous().cpu() for k, v in self.weights().items()}
        save_file(weights, os.path.join(folder, LORA_FILE))

    def _load_lora(self, models: list, folder: str) -> None:
        models.clear()  # there is no whole-model file to read: _save_lora wrote the LoRA weights instead
        self.restore(load_file(os.path.join(folder, LORA_FILE)))

    def save(self, step: int) -> Path:
        """Write `step-NNNNNN` with accelerator.save_state, atomically, and prune older checkpoints. Every process
        calls it: each writes its own RNG file into the folder (which several machines must therefore share)."""
        accelerator, main = self.accelerator, self.accelerator.is_main_process
        final = self.folder / f"step-{step:06d}"
        tmp = self.folder / f".tmp-step-{step:06d}"
        generators = gather_object([self.generator.get_state()])  # every rank's, in rank order
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()  # every rank's files are written before the rename publishes them
        if main:
            save_file({f"rank{rank}": state for rank, state in enumerate(generators)}, tmp / GENERATORS_FILE)
            (tmp / "step.json").write_text(json.dumps({"step": step, "world_size": accelerator.num_processes}))
            for path in tmp.iterdir():
                with open(path, "rb") as handle:  # on disk before the rename makes the checkpoint visible
                    os.fsync(handle.fileno())
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in sorted(self.folder.glob("step-*"))[:-KEEP]:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def resume(self) -> int:
        """Restore the newest complete checkpoint into the prepared run; the step to continue from (0: none)."""
        path = _newest_complete(self.folder)
        if path is None:
            return 0
        info = json.loads((path / "step.json").read_text())
        written_by = info.get("world_size", 1)
        if written_by != self.accelerator.num_processes:
            raise WorldSizeChanged(f"the checkpoint at step {info['step']} was written by {written_by} training "
                                   f"process(es); resume with T2I_TRAIN_PROCESSES={written_by} (this run has "
                                   f"{self.accelerator.num_processes})")
        if (path / "state.pt").exists():  # an earlier version's checkpoint: optimizer and generator in one file
            state = torch.load(path / "state.pt", weights_only=True, map_location="cpu")
            self.restore(load_file(str(path / LORA_FILE)))
            self.optimizer.load_state_dict(state["optimizer"])
            self.generator.set_state(state["generator"])
        else:
            self.accelerator.load_state(str(path))
        if (path / GENERATORS_FILE).exists():  # this rank's own sequence (older checkpoints: rank 0's, above)
            self.generator.set_state(load_file(str(path / GENERATORS_FILE))[f"rank{self.accelerator.process_index}"])
        return info["step"]


def _newest_complete(folder: Path) -> Path | None:
    return next((path for path in sorted(folder.glob("step-*"), reverse=True) if (path / "step.json").exists()), None)


def latest_checkpoint_step(folder: Path) -> int:
    """The step of the newest complete checkpoint in `folder` (0: none), without loading it."""
    path = _newest_complete(folder)
    return json.loads((path / "step.json").read_text())["step"] if path else 0
