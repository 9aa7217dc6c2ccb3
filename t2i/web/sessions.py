"""Uploads by browser session: which uploaded files each session used, deleted when that session ends.

The front end's upload cache lives in `upload_folder(data_dir)`, outside the app folder. Gradio names each upload
by a hash of its content, so two sessions that upload the same file share one path: a file is deleted only when
the last live session that recorded it ends. A page records each upload as it lands (the input's upload event) and
again when a handler uses it, so a file is never deleted while an open page still holds it unchecked. Generated
outputs are the user's work and are never touched here.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterable

UPLOADS = "uploads"
MAX_PATH_CHARS = 4096  # longer strings are text, not paths: not worth resolving


def upload_folder(data_dir: Path) -> Path:
    """Where the front end's uploads land: a sub-folder of the data folder, beside the per-session outputs."""
    return data_dir / UPLOADS


class SessionUploads:
    """The uploaded files each live session used; `end(session)` deletes those no other live session uses."""

    def __init__(self, folder: Path):
        self.folder = folder.resolve()
        self._files: dict[str, set[Path]] = {}
        self._lock = threading.Lock()

    def track(self, session: str, *values) -> list[Path]:
        """Record every upload among `values` (paths, or lists/tuples/dicts holding them) for `session`.

        Values that are not files inside the upload folder (text, other folders, symlinks leading out) are
        ignored. Each recorded file's age is refreshed, so the cache's age-based sweep spares files in use.
        """
        paths = [path for path in map(self._inside, _strings(values)) if path is not None]
        if not session or not paths:
            return []
        with self._lock:
            self._files.setdefault(session, set()).update(paths)
        for path in paths:
            try:
                os.utime(path)
            except OSError:  # deleted meanwhile: the handler reports its own error
                pass
        return paths

    def gone(self, *values) -> list[str]:
        """The names of files among `values` that were uploaded (absolute paths inside the upload folder) and are
        no longer there: deleted by the age sweep or a server restart."""
        names = []
        for value in _strings(values):
            if len(value) > MAX_PATH_CHARS or not os.path.isabs(value):
                continue
            try:
                path = Path(value).resolve()
                missing = path.is_relative_to(self.folder) and path != self.folder and not path.exists()
            except (OSError, ValueError):  # e.g. a NUL byte in text that is not a path
                continue
            if missing:
                names.append(path.name)
        return names

    def files(self, session: str) -> set[Path]:
        """The uploads recorded for `session`."""
        with self._lock:
            return set(self._files.get(session, ()))

    def end(self, session: str) -> list[Path]:
        """Forget `session` and delete its uploads that no other live session uses; returns the deleted files."""
        deleted = []
        with self._lock:  # held while deleting, so no other session can take up a file as it goes
            mine = self._files.pop(session, set())
            for path in mine.difference(*self._files.values()):
                try:
                    path.unlink()
                except OSError:  # already gone (the cache sweep, a server restart)
                    continue
                deleted.append(path)
                if path.parent != self.folder:  # Gradio's per-upload hash folder, now usually empty
                    try:
                        path.parent.rmdir()
                    except OSError:
                        pass
        return deleted

    def _inside(self, value: str) -> Path | None:
        """`value` as a resolved path when it is a regular file strictly inside the upload folder, else None."""
        if not value or len(value) > MAX_PATH_CHARS:
            return None
        try:
            path = Path(value).resolve()
            inside = path.is_relative_to(self.folder) and path != self.folder and path.is_file()
        except (OSError, ValueError):  # e.g. a NUL byte in text that is not a path
            return None
        return path if inside else None


def _strings(values: Iterable) -> Iterable[str]:
    """Every string or path in `values`, looking inside lists, tuples, sets and dict values."""
    for value in values:
        if isinstance(value, (str, os.PathLike)):
            yield os.fspath(value)
        elif isinstance(value, dict):
            yield from _strings(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            yield from _strings(value)
