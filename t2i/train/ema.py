"""An exponential moving average of the LoRA weights (TrainingConfig.ema_decay), on diffusers' EMAModel.

EMAModel warms its decay up: at update n the decay is min(ema_decay, (1 + k) / (10 + k)) with k = n - 1 (0 at
the first update, which copies the weights), so a short LoRA run is not dominated by its random start.
"""

from __future__ import annotations

from typing import Iterable

import torch
from diffusers.training_utils import EMAModel


class LoraEMA:
    """The average of `params` (the trained LoRA parameters, in a fixed order), updated after each optimizer step."""

    def __init__(self, params: Iterable[torch.nn.Parameter], decay: float):
        self.params = list(params)
        self.average = EMAModel(self.params, decay=decay)

    def update(self) -> None:
        """Move the average towards the parameters' current values."""
        self.average.step(self.params)

    def copy_to(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Write the averaged weights into `params` (e.g. before export)."""
        self.average.copy_to(params)

    def state_dict(self) -> dict:
        """Decay, update count and the averaged tensors, for a checkpoint."""
        return self.average.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint's state_dict()."""
        self.average.load_state_dict(state)
