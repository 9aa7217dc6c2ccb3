"""The figures the docs quote come from bench/results and name the model they were measured on
(scripts/docs_figures.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIX = "; run python scripts/docs_figures.py --write (and re-measure what it calls an older model)"


@pytest.fixture(scope="module")
def figures():
    spec = importlib.util.spec_from_file_location("docs_figures", ROOT / "scripts" / "docs_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_hash_is_the_recipes_model_hash(figures):
    # the hash the docs name is what every PNG made with the embedded model records as "Model hash"
    from t2i.models.cache import _short_hash
    from t2i.models.families import FAMILIES
    from t2i.settings import EMBEDDED_MODEL_DIR

    assert figures.shipped_model_hash() == _short_hash(EMBEDDED_MODEL_DIR, FAMILIES["sd"])
    assert len(figures.shipped_model_hash()) == 10


@pytest.mark.parametrize("doc", ["BENCHMARKS.md", "README.md", "t2i/embedded/model/README.md"])
def test_the_docs_figures_are_what_the_results_give_now(figures, doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert figures.render(text) == text, f"{doc}: figures blocks differ from bench/results" + FIX


@pytest.mark.parametrize("doc", ["BENCHMARKS.md", "README.md", "t2i/embedded/model/README.md",
                                 "t2i/embedded/controlnet/README.md"])
def test_no_figure_names_a_model_that_is_not_shipped(figures, doc):
    named = set(figures.NAMED_HASH.findall((ROOT / doc).read_text(encoding="utf-8")))
    assert named <= {figures.shipped_model_hash()}, f"{doc} quotes figures of embedded model(s) {named} " \
        f"but {figures.shipped_model_hash()} is shipped" + FIX


def test_the_blocks_are_found_and_each_is_known(figures):
    names = [m["name"] for doc in figures.DOCS for m in figures.BLOCK.finditer((ROOT / doc).read_text("utf-8"))]
    assert set(names) == set(figures.BLOCKS), "every block is used once somewhere, and every marker is known"
    assert len(names) == len(set(names))


def test_every_result_names_its_model():
    for path in sorted((ROOT / "bench" / "results").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for res in data["runs"].values() if "runs" in data else [data]:
            assert res.get("model"), f"{path.name} does not say which model it measured"
            assert "model_hash" in res, f"{path.name}: no model_hash (null for random-weight architectures)"
            if res["model"] == "embedded" and res["model_hash"] is None:
                assert res.get("model_hash_basis"), f"{path.name}: an embedded result without its hash must say why"


def test_the_shipped_model_is_named_by_hash_and_others_are_older(figures):
    shipped = {"time": "2026-12-06T00:00:00Z", "model": "embedded", "model_hash": figures.shipped_model_hash(),
               "machine": {"cpu": "AMD EPYC", "load_average": [1.0, 1.0, 1.0]}}
    older = {**shipped, "model_hash": "0000000000"}
    assert f"embedded model `{figures.shipped_model_hash()}`" in figures.stamp(shipped)
    assert "an older embedded model" in figures.stamp(older)
    assert not figures.NAMED_HASH.search(figures.stamp(older))


def test_a_benchmark_result_is_written_with_its_model(tmp_path, monkeypatch):
    from bench import common

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    written = json.loads(common.write_result("probe", {"x": 1}, model="embedded").read_text())
    assert written["model"] == "embedded" and written["model_hash"] == common.embedded_model_stamp()["model_hash"]
    other = json.loads(common.write_result("probe", {"x": 1}, model="SD 1.5 architecture, random weights").read_text())
    assert other["model_hash"] is None
