"""`python -m t2i batch` end to end on the embedded model: a run killed part-way and started again ends with every
id exactly once; Ray Data with 2 actors (in a loopback-only network namespace) makes the same bytes for the same
rows; a blocked prompt is listed as withheld, not written; a recipe from the dataset remakes its image's bytes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from t2i.batch.generate import request_from_recipe
from t2i.batch.store import DatasetFolder
from t2i.eval.analyzer import analyze
from t2i.recipes.labels import Labeller

pytestmark = pytest.mark.slow  # the command in subprocesses, and a Ray cluster

ROWS = 40
KILL_AT = 8  # rows on disk when the first run is killed
BLOCKED = "a nude woman on a beach"
COLOURS = ["red", "green", "blue", "yellow"]
ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "T2I_DEVICE": "cpu", "T2I_ENTRY_POINT_PLUGINS": "1",
       "RAY_USAGE_STATS_ENABLED": "0", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def _rows(path: Path) -> Path:
    lines = [{"id": f"img-{i:03d}", "prompt": f"a large {COLOURS[i % 4]} circle on a white background", "seed": i,
              "steps": 3, "cfg": 5.0, "sampler": "Euler"} for i in range(ROWS - 1)]
    lines.append({"id": "blocked", "prompt": BLOCKED, "seed": 1, "steps": 3})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _command(rows: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "t2i", "batch", str(rows), "--out", str(out), "--batch-size", "4", *extra]


def _ids_on_disk(out: Path) -> list[str]:
    ids = []
    for part in sorted(out.glob("part-*.parquet")):
        ids += pq.read_table(part, columns=["id"])["id"].to_pylist()
    return ids


def _dataset(out: Path):
    return DatasetFolder(out).read().set_index("id")


def _progress_reaches(process: subprocess.Popen, rows: int) -> int | None:
    """Block on the command's progress bar (stderr) until it counts `rows` rows done, which it does only after
    their part is on disk; the count shown, or None when the command ended first."""
    seen = b""
    while chunk := os.read(process.stderr.fileno(), 4096):
        seen += chunk
        counts = [int(done) for done in re.findall(rb"(\d+)/%d \[" % (ROWS,), seen)]
        if counts and counts[-1] >= rows:
            return counts[-1]
    return None


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A local run killed (SIGKILL) once KILL_AT rows are on disk, then run again to the end."""
    folder = tmp_path_factory.mktemp("batch-local")
    rows, out = _rows(folder / "rows.jsonl"), folder / "out"
    first = subprocess.Popen(_command(rows, out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        shown = _progress_reaches(first, KILL_AT)
    finally:
        first.kill()
        first.wait()
    assert shown is not None, "the first run ended before the kill"
    killed_with = len(_ids_on_disk(out))
    assert KILL_AT <= killed_with < ROWS - 1, killed_with
    second = subprocess.run(_command(rows, out), env=ENV, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    return {"out": out, "killed_with": killed_with, "stderr": second.stderr}


def test_a_killed_run_started_again_writes_each_id_exactly_once(local):
    ids = _ids_on_disk(local["out"])
    assert sorted(ids) == [f"img-{i:03d}" for i in range(ROWS - 1)]  # each once, the blocked row not at all
    assert f"{ROWS - 1 - local['killed_with']} written, 1 withheld" in local["stderr"]
    assert f"{local['killed_with']} already there" in local["stderr"]


def test_images_carry_their_recipe_and_follow_the_prompt(local):
    dataset = _dataset(local["out"])
    for row_id in ("img-000", "img-001", "img-002"):
        row = dataset.loc[row_id]
        assert hashlib.sha256(row.image).hexdigest() == row.sha256
        image = Image.open(io.BytesIO(row.image))
        recipe = json.loads(row.recipe)
        assert json.loads(image.info["t2i_recipe"])["seed"] == recipe["seed"] == int(row_id[-3:])
        assert row.caption == recipe["prompt"]
        assert analyze(image.convert("RGB")).background == "white"


def test_a_blocked_prompt_is_listed_as_withheld_not_written(local):
    withheld = [json.loads(line) for line in (local["out"] / "withheld.jsonl").read_text().splitlines()]
    assert [entry["id"] for entry in withheld] == ["blocked"] and withheld[0]["reason"]
    assert "blocked" not in _ids_on_disk(local["out"])


def test_a_recipe_from_the_dataset_remakes_the_same_bytes(local, engine):
    row = _dataset(local["out"]).loc["img-005"]
    result = engine.generate(request_from_recipe(row.recipe))
    item = result.images[0]
    png = Labeller().png(item.image, item.parameters, title="img-005.png")
    assert hashlib.sha256(png).hexdigest() == row.sha256


def test_ray_data_with_two_actors_makes_the_same_images(local, tmp_path):
    pytest.importorskip("ray", reason="Ray is the optional `ray` extra (requirements-ray.txt)")
    from t2i.ray.loopback import loopback_command, unavailable_reason

    if reason := unavailable_reason():
        pytest.skip(reason)
    out = tmp_path / "ray"
    done = subprocess.run(loopback_command(_command(local["out"].parent / "rows.jsonl", out, "--ray",
                                                    "--actors", "2")),
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    on_ray, here = _dataset(out), _dataset(local["out"])
    assert len(on_ray) == ROWS - 1 and on_ray.index.is_unique
    assert on_ray["sha256"].sort_index().to_dict() == here["sha256"].sort_index().to_dict()
    assert [json.loads(line)["id"] for line in (out / "withheld.jsonl").read_text().splitlines()] == ["blocked"]


def test_webdataset_shards_hold_the_same_images_and_a_second_run_adds_none(local, tmp_path):
    import webdataset as wds

    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join((local["out"].parent / "rows.jsonl").read_text().splitlines(keepends=True)[:6]))
    out = tmp_path / "shards"
    for attempt in range(2):
        done = subprocess.run(_command(rows, out, "--format", "webdataset"), env=ENV, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    assert "0 written, 0 withheld" in done.stderr and "6 already there" in done.stderr
    samples = [sample for shard in sorted(out.glob("part-*.tar"))
               for sample in wds.WebDataset(str(shard), shardshuffle=False)]
    here = _dataset(local["out"])
    assert sorted(sample["id"].decode() for sample in samples) == [f"img-{i:03d}" for i in range(6)]
    for sample in samples:  # the same PNG bytes as the Parquet run's, readable by a WebDataset loader
        row_id = sample["id"].decode()
        assert hashlib.sha256(sample["png"]).hexdigest() == sample["sha256"].decode() == here.loc[row_id, "sha256"]
        assert sample["txt"].decode() == here.loc[row_id, "caption"]
