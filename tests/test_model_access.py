"""Which models a web request may load: the model folder by name, hub ids, and no other server paths."""

import dataclasses
import shutil

import numpy as np
import pytest

from t2i.generation.engine import Engine
from t2i.recipes.infotext import infotext
from t2i.models.access import check_server_model, model_folder_entries
from t2i.request import RequestError
from t2i.settings import EMBEDDED_MODEL_DIR
from t2i.studio import GenerateForm, Studio


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    shutil.copytree(EMBEDDED_MODEL_DIR, folder / "shapes")
    (folder / "notes").mkdir()  # not a pipeline: not offered
    (folder / "old.ckpt").write_bytes(b"pickle")  # not safetensors: not offered
    return folder


@pytest.fixture(scope="module")
def studio(settings, model_dir):
    served = dataclasses.replace(settings, model_dir=model_dir)
    return Studio(served, Engine(served))


def test_the_model_folder_offers_its_pipelines_by_name(studio, model_dir):
    assert list(model_folder_entries(studio.settings)) == ["shapes"]
    assert "shapes" in studio.model_choices()


@pytest.mark.parametrize("spec", ["", "embedded", "shapes", "stabilityai/sdxl-turbo"])
def test_a_server_accepts_offered_models_and_hub_ids(studio, spec):
    check_server_model(spec, studio.settings)


@pytest.mark.parametrize("spec", ["/etc", "~", "../models/shapes", "./t2i/embedded/model", "t2i/embedded/model",
                                  "C:\\models\\x", "not a model"])
def test_a_server_refuses_other_local_paths(studio, spec):
    with pytest.raises(RequestError, match="unknown model .*this server loads no other local paths"):
        studio.request_from_form(GenerateForm(prompt="a red circle", model=spec))


def test_a_folder_path_loads_only_where_local_paths_are_allowed(studio, model_dir):
    path = str(model_dir / "shapes")
    with pytest.raises(RequestError, match="unknown model"):
        studio.request_from_form(GenerateForm(prompt="a red circle", model=path))
    laptop = dataclasses.replace(studio.settings, model_local_paths=True)
    assert Studio(laptop, studio.engine).request_from_form(GenerateForm(prompt="a red circle", model=path)).model == path


def test_a_model_named_from_the_folder_draws_what_its_weights_draw(studio):
    form = dict(prompt="a large blue square on a yellow background", steps=8, seed=5)
    by_name = studio.engine.generate(studio.request_from_form(GenerateForm(model="shapes", **form)))
    embedded = studio.engine.generate(studio.request_from_form(GenerateForm(model="embedded", **form)))
    pixels = np.asarray(by_name.images[0].image)
    assert np.array_equal(pixels, np.asarray(embedded.images[0].image))  # the same weights, the same bytes
    assert by_name.images[0].parameters["model"] == "shapes"  # the recipe names it, not the server's path
    assert "Model: shapes" in infotext(by_name.images[0].parameters)
