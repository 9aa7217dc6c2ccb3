"""A dataset folder: Parquet parts (or WebDataset tar shards) of finished images, `withheld.jsonl`, and what a
resumed run may skip.

Each part is written to a hidden temporary name, synced, and renamed: a run killed at any moment leaves whole
parts or none, so the ids on disk are exactly the ids finished. A run started again skips those ids and the
withheld ones, so no id is ever written twice.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from t2i.batch.command import FAILED, WITHHELD
from t2i.batch.generate import SCHEMA
from t2i.batch.shards import read_shard, shard_ids, write_shard
from t2i.request import RequestError

FORMATS = {"parquet": ".parquet", "webdataset": ".tar"}  # a folder's parts: its format's file suffix
IMAGE_COLUMNS = ["id", "image", "caption", "recipe", "sha256"]  # what a Parquet part holds


class DatasetFolder:
    """The output folder of one dataset: appends parts, lists withheld rows, knows which ids are done."""

    def __init__(self, folder: Path, format: str = "parquet"):
        self.folder, self.format, self.suffix = folder, format, FORMATS[format]
        for other, suffix in FORMATS.items():  # a resumed run must not mix formats in one folder
            if other != format and any(folder.glob(f"part-*{suffix}")):
                raise RequestError(f"{folder} already holds {other} parts; resume it with --format {other} "
                                   "or choose another folder")
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".tmp-*"):  # a part a killed run did not finish: its rows are made again
            stale.unlink()
        _drop_torn_line(folder / WITHHELD)
        (folder / FAILED).unlink(missing_ok=True)  # failures are retried: the list is this run's

    def done_ids(self) -> set[str]:
        """Ids already written or withheld; a resumed run skips them."""
        ids = {value for path in self.parts() for value in self._part_ids(path)}
        return ids | {entry["id"] for entry in self.withheld()}

    def parts(self) -> list[Path]:
        """The finished parts (Parquet files or tar shards)."""
        return sorted(self.folder.glob(f"part-*{self.suffix}"))

    def _part_ids(self, path: Path) -> list[str]:
        if self.format == "webdataset":
            return shard_ids(path)
        return pq.read_table(path, columns=["id"])["id"].to_pylist()

    def withheld(self) -> list[dict]:
        """`{id, reason}` of each row the safety gate withheld."""
        path = self.folder / WITHHELD
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def add(self, table: pd.DataFrame) -> tuple[int, int, int]:
        """Store one batch of generate_rows output: images as a new part, withheld and failed rows listed;
        returns (written, withheld, failed)."""
        images = table[table["status"] == "ok"]
        if len(images):
            name = f"part-{uuid.uuid4().hex[:16]}{self.suffix}"
            tmp = self.folder / f".tmp-{name}"
            if self.format == "webdataset":
                write_shard(images[IMAGE_COLUMNS], tmp)
            else:
                arrow = pa.Table.from_pandas(images[IMAGE_COLUMNS], schema=_image_schema(), preserve_index=False)
                pq.write_table(arrow, tmp)
            _sync(tmp)
            os.replace(tmp, self.folder / name)
        for status, file in (("withheld", WITHHELD), ("failed", FAILED)):
            rows = table[table["status"] == status]
            if len(rows):
                with open(self.folder / file, "a", encoding="utf-8") as handle:
                    for row_id, reason in zip(rows["id"], rows["reason"]):
                        handle.write(json.dumps({"id": row_id, "reason": reason}) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
        counts = table["status"].value_counts()
        return int(counts.get("ok", 0)), int(counts.get("withheld", 0)), int(counts.get("failed", 0))

    def read(self) -> pd.DataFrame:
        """Every image row of the dataset (all parts)."""
        if not self.parts():
            return pd.DataFrame(columns=IMAGE_COLUMNS)
        read = read_shard if self.format == "webdataset" else (lambda path: pq.read_table(path).to_pandas())
        return pd.concat([read(path) for path in self.parts()], ignore_index=True)


def _image_schema() -> pa.Schema:
    return pa.schema([SCHEMA.field(name) for name in IMAGE_COLUMNS])


def _sync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _drop_torn_line(path: Path) -> None:
    """Cut a last line a kill left half-written, so that appended lines stay whole."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])
