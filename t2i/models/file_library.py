"""A folder of user model files offered by name (VAEs, upscalers, embeddings): listing, lookup and hashes.

Only names found in the folder (or built in) resolve, never a path a user typed, so a web visitor cannot make the
server read other files. Pickle formats are listed as refused, not loaded: they can run code when unpickled.
"""

from __future__ import annotations

import threading
from pathlib import Path

from t2i.models.file_hash import file_sha256
from t2i.request import RequestError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class FileLibrary:
    """`.safetensors` files (and, with `folders`, diffusers folders) of one folder, by name, plus built-in files."""

    def __init__(self, kind: str, folder: Path, builtin: dict[str, Path] | None = None, *, keep_suffix: bool = False,
                 folders: bool = False, offered: tuple[str, ...] = ()):
        self.kind = kind  # what the files are, for messages ("VAE", "upscaler", "embedding")
        self.folder = Path(folder)
        self.builtin = dict(builtin or {})
        self.keep_suffix = keep_suffix  # names with ".safetensors" (A1111 records VAEs so), else the file stem
        self.folders = folders
        self.offered = offered  # names offered beside the files (built-in choices), shown when a name is unknown
        self._hashes: dict[tuple[Path, int, int], str] = {}
        self._lock = threading.Lock()

    def entries(self) -> dict[str, Path]:
        """Every usable entry by name, built-in ones first; listed afresh (files may just have been added)."""
        found = dict(self.builtin)
        if self.folder.is_dir():
            for path in sorted(self.folder.iterdir()):
                if path.name.startswith("."):
                    continue
                if path.suffix == ".safetensors" and path.is_file():
                    found.setdefault(path.name if self.keep_suffix else path.stem, path)
                elif self.folders and path.is_dir() and (path / "config.json").is_file():
                    found.setdefault(path.name, path)
        return found

    def names(self) -> list[str]:
        """The names a request may give."""
        return list(self.entries())

    def path(self, name: str) -> Path:
        """The file (or folder) called `name`; RequestError for an unknown name or a pickle file."""
        entries = self.entries()
        if name in entries:
            return entries[name]
        for suffix in PICKLE_SUFFIXES:
            if (self.folder / name).suffix == suffix or (self.folder / f"{name}{suffix}").is_file():
                raise RequestError(f"{self.kind} {name!r} is a pickle file ({suffix}), which can run code when loaded;"
                                   " only .safetensors files are read")
        # the folder's path is not shown: this message reaches web and API visitors
        shown = ", ".join([*self.offered, *entries][:20]) or f"none (the server's {self.kind} folder is empty)"
        raise RequestError(f"unknown {self.kind} {name!r}; available: {shown}")

    def sha256(self, path: Path) -> str:
        """SHA-256 of a file's bytes (a folder's weights file), computed once per version of the file."""
        if path.is_dir():
            weights = sorted(path.glob("*.safetensors"))
            if not weights:
                raise RequestError(f"{self.kind} folder {path.name!r} holds no .safetensors weights")
            path = weights[0]
        stat = path.stat()
        key = (path, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key not in self._hashes:
                self._hashes[key] = file_sha256(path)
            return self._hashes[key]
