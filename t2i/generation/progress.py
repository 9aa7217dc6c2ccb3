"""What a running generation reports: progress events with previews, and cancellation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from PIL import Image


class GenerationCancelled(Exception):
    """The caller asked to stop; nothing is returned for the unfinished batch."""


@dataclass
class ProgressEvent:
    """Sent during sampling: which step of which batch, and approximate previews of the images."""

    step: int
    total_steps: int
    batch: int
    total_batches: int
    previews: list[Image.Image | None] | None = None  # None for a preview the safety gate held back


ProgressCallback = Callable[[ProgressEvent], None]
