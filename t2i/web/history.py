"""History: each browser's own results, newest first, kept across page reloads and bounded by count and age.

A browser holds a random history id (in its encrypted browser storage); the server keeps that browser's results
in a folder named by a hash of the id, so a served file's address never reveals the id, and without the id no
one can list, add to or delete from a history. Each entry is a hard link to (or a copy of) a result PNG (its
recipe inside), named by the time it was added: the folder itself is the index, so there is nothing else to keep
in step.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from t2i.request import RequestError
from t2i.settings import Settings

HISTORY = "history"
_ID = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
_ENTRY = re.compile(r"^(\d{19})-[A-Za-z0-9_.-]{1,120}\.png$")  # nanoseconds since the epoch, then the file's name


def history_folder(data_dir: Path) -> Path:
    """Where every browser's history lives (served to the pages, like their outputs)."""
    return data_dir / HISTORY


@dataclass(frozen=True)
class Entry:
    """One result in a history."""

    path: Path
    stamp: int  # when it was added: nanoseconds since the epoch

    @property
    def added(self) -> float:
        """When it was added, in seconds since the epoch."""
        return self.stamp / 1e9

    @property
    def name(self) -> str:
        return self.path.name


class History:
    """Per-browser histories under one folder, at most `max_items` entries each, none older than `max_days`."""

    def __init__(self, folder: Path, max_items: int, max_days: float, clock: Callable[[], float] = time.time):
        self.folder = folder
        self.max_items = max_items
        self.max_age_s = max_days * 86400
        self.clock = clock
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> History:
        return cls(history_folder(settings.data_dir), settings.history_max, settings.history_days)

    @staticmethod
    def new_id() -> str:
        """A fresh history id for a browser that has none."""
        return secrets.token_urlsafe(32)

    @staticmethod
    def is_id(value) -> bool:
        """Whether `value` has the form of a history id (anything else a client sends means no history)."""
        return isinstance(value, str) and bool(_ID.match(value))

    def _own_folder(self, history_id: str) -> Path:
        if not self.is_id(history_id):
            raise RequestError("this page has no history id; reload the page")
        return self.folder / hashlib.sha256(history_id.encode()).hexdigest()[:32]

    def add(self, history_id: str, paths: Iterable[Path]) -> list[Entry]:
        """Copy result PNGs into the history (newest last in `paths`), then apply the bounds; the new entries."""
        folder = self._own_folder(history_id)
        folder.mkdir(parents=True, exist_ok=True)
        added = []
        with self._lock:
            known = {entry.name.split("-", 1)[1] for entry in self._list(folder)}
            for path in paths:
                if _safe_name(path) in known:  # already there (a page may report the same result twice)
                    continue
                known.add(_safe_name(path))
                # nanoseconds on the history's clock, strictly increasing within a folder: a stable order
                stamp = max(int(self.clock() * 1e9), self._latest_stamp(folder) + 1)
                target = folder / f"{stamp:019d}-{_safe_name(path)}"
                _link_or_copy(Path(path), target)
                added.append(Entry(target, stamp))
            self._prune(folder)
        return [entry for entry in added if entry.path.exists()]

    def entries(self, history_id: str) -> list[Entry]:
        """The history's results, newest first (expired ones are dropped first)."""
        folder = self._own_folder(history_id)
        with self._lock:
            self._prune(folder)
            return self._list(folder)

    def delete(self, history_id: str, name: str) -> None:
        """Delete one entry by its file name; a name that is not in this history is an error."""
        folder = self._own_folder(history_id)
        with self._lock:
            entry = next((e for e in self._list(folder) if e.name == name), None)
            if entry is None:
                raise RequestError("that image is not in your history (already deleted?)")
            entry.path.unlink(missing_ok=True)

    def _list(self, folder: Path) -> list[Entry]:
        if not folder.is_dir():
            return []
        entries = [Entry(path, int(match.group(1))) for path in folder.iterdir()
                   if (match := _ENTRY.match(path.name)) and path.is_file()]
        return sorted(entries, key=lambda e: e.name, reverse=True)

    def _latest_stamp(self, folder: Path) -> int:
        entries = self._list(folder)
        return entries[0].stamp if entries else 0

    def _prune(self, folder: Path) -> None:
        """Drop entries past the count bound (oldest first) and those older than the age bound."""
        oldest = self.clock() - self.max_age_s
        for index, entry in enumerate(self._list(folder)):
            if index >= self.max_items or entry.added < oldest:
                entry.path.unlink(missing_ok=True)


def _link_or_copy(source: Path, target: Path) -> None:
    """Put `source` at `target` without writing its bytes again where it can: a hard link (the history keeps the
    image when the output is deleted), else a copy (another file system), each made under a temporary name."""
    temporary = target.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def _safe_name(path: Path | str) -> str:
    """A file's name as an entry keeps it: letters, digits, `_.-` only, at most 120 characters."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).name)[-120:]
