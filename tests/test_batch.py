"""Dataset generation without a model: rows checked as requests (each bad row named by its id, nothing run), and
the dataset folder's bookkeeping that makes a killed run resumable without duplicates."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from t2i.batch.generate import SCHEMA, request_from_recipe
from t2i.batch.rows import parse_row, parse_rows, read_jsonl
from t2i.batch.shards import sample_key
from t2i.batch.store import FORMATS, DatasetFolder
from t2i.request import GenerationRequest, RequestError
from t2i.train.lora_trainer import rank_seed


def test_a_row_becomes_the_request_it_describes(settings):
    row = parse_row({"id": 7, "prompt": "a red circle", "negative_prompt": "blur", "seed": 3, "steps": 4, "cfg": 6,
                     "sampler": "DPM++ 2M", "model": "embedded", "loras": ["ink:0.5", {"name": "dots"}]}, settings)
    assert row.id == "7"
    assert row.request == GenerationRequest(prompt="a red circle", negative_prompt="blur", seed=3, steps=4, cfg=6,
                                            sampler="DPM++ 2M", model="embedded",
                                            plugin_units={"lora": [{"name": "ink", "weight": 0.5}, {"name": "dots"}]})


def test_missing_values_from_pandas_are_left_out(settings):
    row = parse_row({"id": "a", "prompt": "a red circle", "seed": 1, "negative_prompt": float("nan"),
                     "loras": None}, settings)
    assert row.request.negative_prompt == "" and row.request.plugin_units == {}


def test_every_bad_row_is_named_and_nothing_runs(settings):
    rows = [{"id": "ok", "prompt": "a red circle", "seed": 1},
            {"id": "no-seed", "prompt": "a red circle"},
            {"id": "steps", "prompt": "a red circle", "seed": 1, "steps": 0},
            {"id": "sampler", "prompt": "a red circle", "seed": 1, "sampler": "Bogus"},
            {"id": "random", "prompt": "a red circle", "seed": -1},
            {"id": "extra", "prompt": "a red circle", "seed": 1, "width": 64},
            {"id": "ok", "prompt": "a blue circle", "seed": 2},
            {"prompt": "no id", "seed": 1}]
    with pytest.raises(RequestError) as error:
        parse_rows(rows, settings)
    message = str(error.value)
    assert message.startswith("7 bad row(s), nothing generated")
    for expected in ("row 'no-seed': seed is required", "row 'steps': steps must be", "row 'sampler': unknown sampler",
                     "row 'random': seed must be a whole number from 0", "row 'extra': unknown field 'width'",
                     "row 'ok': the id is used twice", "a row has no id"):
        assert expected in message


def test_jsonl_errors_name_the_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": 1, "prompt": "a", "seed": 1}\n\n[1, 2]\n')
    with pytest.raises(RequestError, match="rows.jsonl line 3: a row must be a JSON object"):
        read_jsonl(path)
    path.write_text('{"id": 1,\n')
    with pytest.raises(RequestError, match="line 1: not JSON"):
        read_jsonl(path)


def _table(*rows: tuple[str, str]) -> pd.DataFrame:
    """generate_rows-shaped output: (id, status) pairs, ok rows with some PNG-ish bytes."""
    records = []
    for row_id, status in rows:
        data = f"png of {row_id}".encode() if status == "ok" else None
        records.append({"id": row_id, "image": data, "caption": "c" if data else None,
                        "recipe": json.dumps({"prompt": "c", "seed": 1}) if data else None,
                        "sha256": hashlib.sha256(data).hexdigest() if data else None, "status": status,
                        "reason": "" if status == "ok" else f"{status} because"})
    return pd.DataFrame(records, columns=SCHEMA.names)


@pytest.mark.parametrize("format", ["parquet", "webdataset"])
def test_the_folder_knows_what_a_resumed_run_skips(tmp_path, format):
    folder = DatasetFolder(tmp_path / "out", format)
    assert folder.add(_table(("a", "ok"), ("b", "withheld"), ("c", "failed"))) == (1, 1, 1)
    assert folder.add(_table(("d", "ok"), ("e", "ok"))) == (2, 0, 0)
    assert folder.done_ids() == {"a", "b", "d", "e"}  # the failed row is tried again
    assert folder.withheld() == [{"id": "b", "reason": "withheld because"}]
    written = folder.read()
    assert sorted(written["id"]) == ["a", "d", "e"] and list(written.columns) == ["id", "image", "caption", "recipe",
                                                                                  "sha256"]
    assert written.set_index("id").loc["d", "image"] == b"png of d"  # the bytes come back as written
    # a kill mid-write leaves a temporary part and a torn line: the next run drops both
    (tmp_path / "out" / f".tmp-part-x{FORMATS[format]}").write_bytes(b"half a part")
    with open(tmp_path / "out" / "withheld.jsonl", "a") as handle:
        handle.write('{"id": "f", "rea')
    reopened = DatasetFolder(tmp_path / "out", format)
    assert not list((tmp_path / "out").glob(".tmp-*"))
    assert reopened.done_ids() == {"a", "b", "d", "e"}
    reopened.add(_table(("f", "withheld")))
    assert [entry["id"] for entry in reopened.withheld()] == ["b", "f"]
    assert not (tmp_path / "out" / "failed.jsonl").exists()  # the failures listed are the current run's


def test_a_folder_of_one_format_is_not_resumed_in_the_other(tmp_path):
    DatasetFolder(tmp_path / "out", "webdataset").add(_table(("a", "ok")))
    with pytest.raises(RequestError, match="already holds webdataset parts; resume it with --format webdataset"):
        DatasetFolder(tmp_path / "out", "parquet")


def test_webdataset_keys_hold_no_dots_and_differ_per_id():
    keys = {sample_key(row_id) for row_id in ["a.b", "a/b", "a_b", "img-001"]}
    assert len(keys) == 4 and not any("." in key or "/" in key for key in keys)


def test_a_recipe_gives_back_its_request():
    request = GenerationRequest(prompt="a red circle", seed=5, steps=3, styles=("Photo",),
                                plugin_units={"lora": [{"name": "ink", "weight": 0.5}]})
    recipe = json.dumps({**request.recipe(), "model_hash": "abc", "final_prompt": "x"})
    assert request_from_recipe(recipe) == request


def test_each_rank_has_its_own_seed_and_rank_0_keeps_the_runs():
    assert rank_seed(7, 0) == 7
    seeds = {rank_seed(seed, rank) for seed in range(4) for rank in range(1, 4)} | set(range(4))
    assert len(seeds) == 16


def test_a_pandas_batch_with_numpy_values_and_array_loras_is_read_as_plain_rows(settings):
    from t2i.batch.generate import _plain

    frame = pd.DataFrame([{"id": "a", "prompt": "a red circle", "seed": 3, "steps": 4, "loras": None},
                          {"id": "b", "prompt": "a red circle", "seed": 4, "steps": 5, "loras": ["ink:0.5"]}])
    frame["loras"] = frame["loras"].map(lambda value: None if value is None else pd.array(value).to_numpy())
    first, second = (parse_row(_plain(values), settings) for values in frame.to_dict("records"))
    assert (first.request.seed, first.request.steps, first.request.plugin_units) == (3, 4, {})
    assert second.request.plugin_units == {"lora": [{"name": "ink", "weight": 0.5}]}
