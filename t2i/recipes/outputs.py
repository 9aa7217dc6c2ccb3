"""Saving results: each image a PNG with its recipe and labels, in the private output folder of its session."""

from __future__ import annotations

import errno
import re
import uuid
from pathlib import Path

from t2i.recipes.infotext import write_atomically
from t2i.recipes.labels import Labeller
from t2i.request import GenerationResult, RequestError

SESSION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def session_folder(data_dir: Path, session: str) -> Path:
    """The private output folder of one browser session (created on first use)."""
    if not SESSION_NAME.match(session or ""):
        session = "anonymous"
    folder = data_dir / "sessions" / session / "outputs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_result(result: GenerationResult, folder: Path, labeller: Labeller = Labeller()) -> list[Path]:
    """Write each image of a result as a PNG with its recipe and AI-generated labels; returns the paths.

    Each file gets a unique id chunk: Gradio caches files by content hash, and byte-identical
    outputs served at once can collide there (see PITFALLS).
    """
    paths = []
    try:
        for item in result.images:
            if item.image is None:
                continue
            name = f"{item.seed}-{uuid.uuid4().hex[:12]}.png"
            path = folder / name
            write_atomically(path, labeller.png(item.image, item.parameters, {"t2i_file_id": name}, title=name))
            paths.append(path)
    except OSError as exc:
        for path in paths:  # all of a result or none of it: no half batch left behind
            path.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise RequestError("no space left on the server to save the images; nothing was saved") from exc
        raise
    return paths
