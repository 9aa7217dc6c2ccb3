"""Which models a request may name: the model folder's entries by name, and, for a shared server, nothing else local.

A1111 and Fooocus list the checkpoints in their models folder and load only those from the web UI; t2i does the
same for `T2I_MODEL_DIR`. The Python API and the CLI belong to the machine's own user and load any path. A web
request may name the embedded model, the configured default, an entry of the model folder, or a hub id; other
server paths only with `T2I_MODEL_LOCAL_PATHS=1` (a single-user laptop), so a visitor of a public Space cannot
make the server read arbitrary files.
"""

from __future__ import annotations

import re
from pathlib import Path

from t2i.request import RequestError
from t2i.settings import Settings

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")
SINGLE_FILE_SUFFIXES = (".safetensors", ".gguf")  # GGUF: quantised denoisers (Flux, Qwen-Image ...)


def model_folder_entries(settings: Settings) -> dict[str, Path]:
    """Models in the model folder by name: diffusers folders (with model_index.json), .safetensors and .gguf files."""
    folder = Path(settings.model_dir).expanduser()
    if not folder.is_dir():
        return {}
    entries = {}
    for path in sorted(folder.iterdir()):
        if path.is_dir() and (path / "model_index.json").is_file():
            entries[path.name] = path
        elif path.is_file() and path.suffix in SINGLE_FILE_SUFFIXES:
            entries[path.name] = path
    return entries


def _looks_local(spec: str) -> bool:
    return (spec.startswith(("/", "~", ".")) or "\\" in spec or ".." in spec.split("/")
            or Path(spec).expanduser().exists())


def check_server_model(spec: str, settings: Settings) -> None:
    """Raise RequestError when a web request names a model the server does not offer."""
    spec = spec.strip()
    if spec in ("", "embedded", settings.default_model) or settings.model_local_paths:
        return
    if spec in model_folder_entries(settings):
        return
    if _looks_local(spec) or not HUB_ID.match(spec):
        raise RequestError(f"unknown model {spec!r}: choose 'embedded', a model from the server's model folder by "
                           "name, or a hub id (owner/name); this server loads no other local paths")
