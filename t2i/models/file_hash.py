"""SHA-256 of files on disk, read by `hashlib.file_digest` (the library's buffered loop, not ours)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of one file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def files_sha256(paths: Iterable[str | Path]) -> str:
    """Hex SHA-256 of several files' bytes read one after another, as if they were one file."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            # file_digest builds its hash object by calling this, so every file feeds the same running digest
            hashlib.file_digest(handle, lambda: digest)
    return digest.hexdigest()
