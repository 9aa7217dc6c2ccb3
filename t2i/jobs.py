"""Running a generation for a front end: streamed progress, safe image uploads, per-session output files."""

from __future__ import annotations

import errno
import queue
import re
import threading
import uuid
from pathlib import Path
from typing import Iterator

from PIL import Image, UnidentifiedImageError

from .engine import Engine, GenerationCancelled, ProgressEvent
from .labels import Labeller
from .metadata import write_atomically
from .request import GenerationRequest, GenerationResult, RequestError

SESSION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def stream_generation(engine: Engine, request: GenerationRequest,
                      cancel: threading.Event | None = None) -> Iterator[ProgressEvent | GenerationResult]:
    """Run `request` in a worker thread, yielding progress events and then the result.

    Setting `cancel`, or closing the iterator early (a client went away), stops the run at the next step.
    """
    events: queue.Queue = queue.Queue()
    cancel = cancel or threading.Event()
    outcome: dict = {}

    def work():
        try:
            outcome["result"] = engine.generate(request, on_progress=events.put, cancel=cancel)
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc
        finally:
            events.put(None)

    worker = threading.Thread(target=work, name="t2i-generate", daemon=True)
    worker.start()
    try:
        while (event := events.get()) is not None:
            yield event
    finally:
        cancel.set()  # no-op when finished; stops sampling when the consumer left early
        worker.join()
    if "error" in outcome:
        if isinstance(outcome["error"], GenerationCancelled):
            return
        raise outcome["error"]
    yield outcome["result"]


def load_image_file(path: str | Path, max_bytes: int, max_pixels: int, what: str = "image") -> Image.Image:
    """Decode an uploaded image fully, refusing oversized files, decompression bombs and corrupt data."""
    path = Path(path)
    if path.stat().st_size > max_bytes:
        raise RequestError(f"{what} is {path.stat().st_size >> 20} MB; the limit is {max_bytes >> 20} MB")
    try:
        with Image.open(path) as image:
            if image.width * image.height > max_pixels:
                raise RequestError(f"{what} is {image.width}x{image.height}; the limit is {max_pixels} pixels")
            image.load()
            return image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, RequestError):
            raise
        raise RequestError(f"{what} could not be read as an image ({type(exc).__name__})") from exc


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
