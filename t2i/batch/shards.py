"""WebDataset shards: the same image rows as the Parquet parts, as tar files that WebDataset loaders stream.

Each row is one sample whose key is derived from its id (WebDataset splits a member's name at its first dot, and an
id may hold dots or slashes): `KEY.png` (the labelled PNG with its recipe), `KEY.txt` (the caption), `KEY.json` (the
recipe), `KEY.id` (the row's id) and `KEY.sha256` (the PNG's digest), as webdataset's TarWriter writes them.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pandas as pd
import webdataset as wds


def sample_key(row_id: str) -> str:
    """A WebDataset key for a row id: no dots or slashes, the same for the same id."""
    return hashlib.sha256(row_id.encode("utf-8")).hexdigest()[:24]


def write_shard(images: pd.DataFrame, path: Path) -> None:
    """Write the image rows (id, image, caption, recipe, sha256) to one tar shard at `path`."""
    with open(path, "wb") as handle, wds.TarWriter(handle) as sink:
        for row in images.itertuples(index=False):
            sink.write({"__key__": sample_key(row.id), "png": row.image, "txt": row.caption,
                        "json": row.recipe, "id": row.id, "sha256": row.sha256})


def shard_ids(path: Path) -> list[str]:
    """The row ids a shard holds (read from its `.id` members only)."""
    with tarfile.open(path) as tar:
        return [tar.extractfile(member).read().decode("utf-8") for member in tar.getmembers()
                if member.isfile() and member.name.endswith(".id")]


def read_shard(path: Path) -> pd.DataFrame:
    """A shard's rows as the Parquet parts hold them (id, image, caption, recipe, sha256), read by webdataset."""
    rows = [{"id": sample["id"].decode("utf-8"), "image": sample["png"], "caption": sample["txt"].decode("utf-8"),
             "recipe": sample["json"].decode("utf-8"),
             "sha256": sample["sha256"].decode("utf-8")}
            for sample in wds.WebDataset(str(path), shardshuffle=False, empty_check=False)]
    return pd.DataFrame(rows, columns=["id", "image", "caption", "recipe", "sha256"])
