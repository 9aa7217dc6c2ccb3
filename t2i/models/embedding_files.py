"""Textual-inversion embedding files (A1111/Civitai `.safetensors`): the folder, header checks, vectors.

An SD 1.x/2.x embedding holds `emb_params` (vectors x width); an SDXL one holds `clip_l` and `clip_g`, one set of
vectors for each text encoder. Older A1111 `.pt` embeddings are pickles and are refused unread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from t2i.models.file_checks import read_safetensors_header
from t2i.models.file_library import FileLibrary
from t2i.request import RequestError
from t2i.settings import Settings

MAX_BYTES = 16 << 20  # real embeddings are a few kB to a few hundred kB
MAX_VECTORS = 75  # a prompt chunk holds 75 tokens
FLOAT_DTYPES = ("F16", "BF16", "F32")
SD_KEY = "emb_params"
SDXL_KEYS = ("clip_l", "clip_g")


@dataclass(frozen=True)
class EmbeddingFile:
    """One checked embedding file: its name, vectors per text encoder and content hash."""

    name: str
    path: Path
    sha256: str
    vectors: dict[str, tuple[int, int]]  # key (emb_params, clip_l, clip_g) -> (vectors, width)

    @property
    def family(self) -> str:
        return "sdxl" if SDXL_KEYS[0] in self.vectors else "sd"

    @property
    def token_count(self) -> int:
        return next(iter(self.vectors.values()))[0]

    @property
    def short_hash(self) -> str:
        """The 12 hex digits A1111 writes in 'TI hashes'."""
        return self.sha256[:12]

    def tensors(self) -> dict[str, torch.Tensor]:
        """The vectors by key, as float32."""
        return {key: value.float() for key, value in load_file(str(self.path)).items() if key in self.vectors}


class EmbeddingLibrary:
    """The embeddings folder: names as written in prompts (file stems), each file checked on first use."""

    def __init__(self, settings: Settings):
        self.files = FileLibrary("embedding", settings.embeddings_dir)

    def names(self) -> list[str]:
        return self.files.names()

    def get(self, name: str) -> EmbeddingFile:
        """The checked embedding called `name`; RequestError for an unknown name or a malformed file."""
        path = self.files.path(name)
        return read_embedding(name, path, self.files.sha256(path))

    def listing(self) -> list[tuple[str, str, int]]:
        """(name, family, token count) of every readable embedding, for the UI; unreadable files are skipped."""
        rows = []
        for name in self.names():
            try:
                embedding = self.get(name)
            except RequestError:
                continue
            rows.append((name, "SDXL" if embedding.family == "sdxl" else "SD 1.x/2.x", embedding.token_count))
        return rows


def read_embedding(name: str, path: Path, sha256: str) -> EmbeddingFile:
    """Check an embedding file's header (size, keys, dtypes, shapes) without loading its tensors."""
    header = read_safetensors_header(path, MAX_BYTES, max_header_bytes=1 << 20)
    tensors = {key: entry for key, entry in header.items() if key != "__metadata__"}
    if SD_KEY in tensors:
        keys = (SD_KEY,)
    elif all(key in tensors for key in SDXL_KEYS):
        keys = SDXL_KEYS
    else:
        raise RequestError(f"embedding {name!r} has neither `emb_params` (SD 1.x/2.x) nor `clip_l` and `clip_g` "
                           f"(SDXL); its tensors: {', '.join(sorted(tensors)[:5])}")
    vectors = {}
    for key in keys:
        entry = tensors[key]
        if entry["dtype"] not in FLOAT_DTYPES or len(entry["shape"]) != 2:
            raise RequestError(f"embedding {name!r}: {key} must be a 2-D float tensor (vectors x width); got "
                               f"{entry['dtype']} {entry['shape']}")
        count, width = entry["shape"]
        if not 1 <= count <= MAX_VECTORS:
            raise RequestError(f"embedding {name!r} has {count} vectors; from 1 to {MAX_VECTORS} fit a prompt")
        vectors[key] = (count, width)
    if len({count for count, _ in vectors.values()}) > 1:
        raise RequestError(f"embedding {name!r}: clip_l and clip_g hold different numbers of vectors")
    return EmbeddingFile(name=name, path=path, sha256=sha256, vectors=vectors)
