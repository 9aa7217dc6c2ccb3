"""The training run's progress log: the events the runner and the UI follow."""

from __future__ import annotations

import json
import time
from pathlib import Path


class ProgressLog:
    """Appends one JSON object per line; readers (the runner, the UI) follow the file. Only the main process of a
    multi-process run writes (`enabled`), so no event is written twice."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path, self.enabled = path, enabled

    def write(self, event: str, **fields) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}) + "\n")
