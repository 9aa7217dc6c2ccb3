"""Single-file (A1111/Civitai layout) .safetensors checkpoints load offline, through the real engine.

The shipped embedded model is written in the original LDM layout (tests/ldm_layout.py) and loaded back as
`model=<file>`: with T2I_SINGLE_FILE_CONFIG, from a local hub cache, and not at all (a clear error). Sockets
are closed for these tests, so any attempt to reach the network fails them.
"""

from __future__ import annotations

import pickle
import shutil
import socket
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file, save_file

from ldm_layout import save_single_file
from t2i.generation.engine import Engine
from t2i.request import GenerationRequest, RequestError
from t2i.settings import EMBEDDED_MODEL_DIR

PROMPT = "a small red star in the top-left corner on a blue background"
SD15_CONFIG_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # what diffusers names for an SD 1.x-shaped file


@pytest.fixture(scope="module")
def ldm_file(tmp_path_factory):
    """The embedded model as one original-layout checkpoint."""
    pipe = StableDiffusionPipeline.from_pretrained(EMBEDDED_MODEL_DIR)
    return save_single_file(pipe, tmp_path_factory.mktemp("single-file") / "shapes-ldm.safetensors")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, and an empty hub cache: a test sees only the configs it puts there itself."""
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    return cache


def engine_with(engine, **changes) -> Engine:
    """An engine like the shared one (same plugins) with some settings changed."""
    return Engine(replace(engine.settings, **changes), plugins=engine.plugins)


def pixels(engine, model: str) -> np.ndarray:
    result = engine.generate(GenerationRequest(prompt=PROMPT, steps=12, seed=5, model=model))
    return np.asarray(result.images[0].image)


def assert_same_weights(loaded, reference):
    for name in ("unet", "vae", "text_encoder"):
        ours, theirs = getattr(loaded, name).state_dict(), getattr(reference, name).state_dict()
        assert set(ours) == set(theirs), name
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), f"{name} weights changed in the round trip"


def test_single_file_with_configured_folder_matches_the_folder_model(engine, ldm_file):
    single = engine_with(engine, single_file_config=str(EMBEDDED_MODEL_DIR))
    image = pixels(single, str(ldm_file))
    model = single.models.get(str(ldm_file))
    assert model.family == "sd" and model.name == ldm_file.name
    assert_same_weights(model.pipeline, engine.models.get("embedded").pipeline)
    assert model.pipeline.vae.config.scaling_factor == engine.models.get("embedded").pipeline.vae.config.scaling_factor
    reference = pixels(engine, "embedded")
    assert reference.std() > 10  # a real picture, not a flat field both paths could agree on
    assert image.tobytes() == reference.tobytes()


def test_single_file_takes_configs_from_the_local_hub_cache(engine, ldm_file, offline):
    # a hub cache as huggingface_hub writes it: refs/main names a snapshot folder holding the repo's files
    repo_folder = offline / ("models--" + SD15_CONFIG_REPO.replace("/", "--"))
    commit = "0" * 40
    (repo_folder / "refs").mkdir(parents=True)
    (repo_folder / "refs" / "main").write_text(commit)
    shutil.copytree(EMBEDDED_MODEL_DIR, repo_folder / "snapshots" / commit,
                    ignore=shutil.ignore_patterns("*.safetensors"))
    image = pixels(engine_with(engine), str(ldm_file))
    assert image.tobytes() == pixels(engine, "embedded").tobytes()


def test_single_file_without_configs_is_a_clear_error(engine, ldm_file, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # read once at import
    with pytest.raises(RequestError, match="T2I_SINGLE_FILE_CONFIG") as error:
        engine_with(engine).models.get(str(ldm_file))
    assert "diffusers folder" in str(error.value) and SD15_CONFIG_REPO in str(error.value)


def test_pickle_checkpoints_are_refused_unread(engine, tmp_path):
    marker = tmp_path / "unpickled"

    class Payload:  # unpickling this would create the marker file
        def __reduce__(self):
            return open, (str(marker), "w")

    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(pickle.dumps({"state_dict": Payload()}))
    with pytest.raises(RequestError, match="only .safetensors"):
        engine_with(engine, single_file_config=str(EMBEDDED_MODEL_DIR)).models.get(str(checkpoint))
    assert not marker.exists()


def test_corrupt_header_is_refused_before_loading(engine, ldm_file, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(ldm_file.read_bytes()[:4096])  # the header claims tensors past the end of the file
    with pytest.raises(RequestError, match="broken.safetensors"):
        engine_with(engine, single_file_config=str(EMBEDDED_MODEL_DIR)).models.get(str(broken))


def test_missing_weights_are_a_clear_error(engine, ldm_file, tmp_path):
    weights = load_file(str(ldm_file))
    del weights["model.diffusion_model.out.2.weight"]  # the UNet's conv_out
    partial = tmp_path / "partial.safetensors"
    save_file(weights, str(partial))
    with pytest.raises(RequestError, match="partial.safetensors lacks weights that the configs in .* expect"):
        engine_with(engine, single_file_config=str(EMBEDDED_MODEL_DIR)).models.get(str(partial))


def test_family_is_detected_from_the_file_and_checked_against_the_configs(engine, ldm_file, tmp_path, tiny_sdxl_dir):
    with pytest.raises(RequestError, match="StableDiffusionPipeline checkpoint but .* StableDiffusionXLPipeline"):
        engine_with(engine, single_file_config=str(tiny_sdxl_dir)).models.get(str(ldm_file))
    # SDXL files are told apart by their second text encoder (conditioner.embedders.1)
    xl_file = tmp_path / "xl.safetensors"
    save_file({"conditioner.embedders.1.model.positional_embedding": torch.zeros(77, 8)}, str(xl_file))
    with pytest.raises(RequestError, match="StableDiffusionXLPipeline checkpoint but .* StableDiffusionPipeline"):
        engine_with(engine, single_file_config=str(EMBEDDED_MODEL_DIR)).models.get(str(xl_file))
