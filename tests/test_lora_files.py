"""Bad LoRA files are refused before any sampling step with a clear message, and the model serves the next request
unchanged."""

from __future__ import annotations

import dataclasses
import json
import struct

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

from lora_helpers import TEXT_TARGETS, UNET_TARGETS, random_lora_weights
from t2i.generation.engine import Engine
from t2i_plugins.lora.files import LoraLibrary, trigger_words
from t2i.request import GenerationRequest, RequestError
from t2i.settings import EMBEDDED_MODEL_DIR


def _raw(path, header: dict, data: bytes = b"", claimed: int | None = None):
    """A file in safetensors layout with any header, optionally claiming a header length it does not have."""
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if claimed is None else claimed) + text + data)


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_sdxl_dir):
    """One good LoRA and every kind of bad one, by name."""
    folder = tmp_path_factory.mktemp("bad-loras")
    embedded = UNet2DConditionModel.from_pretrained(EMBEDDED_MODEL_DIR / "unet")
    good = random_lora_weights(embedded, "unet", UNET_TARGETS)
    save_file(good, folder / "good.safetensors")
    data = (folder / "good.safetensors").read_bytes()
    (folder / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    torch.save({"unet.x.lora_A.weight": torch.zeros(2, 2)}, folder / "pickle.safetensors")
    _raw(folder / "overclaiming.safetensors", {}, b"{}" * 50, claimed=10**6)
    _raw(folder / "huge_header.safetensors", {"__metadata__": {"pad": "x" * (50 << 20)}})
    for count in (30_000, 100_000):
        _raw(folder / f"tensors_{count}.safetensors",
             {f"t{i}": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i in range(count)},
             b"\0" * 4 * count)
    nan = dict(good)
    nan[next(iter(nan))] = torch.full_like(nan[next(iter(nan))], float("nan"))
    save_file(nan, folder / "nan.safetensors")
    save_file({k: v.to(torch.int32) for k, v in good.items()}, folder / "integers.safetensors")
    tiny_xl = UNet2DConditionModel.from_pretrained(tiny_sdxl_dir / "unet")
    save_file(random_lora_weights(tiny_xl, "unet", UNET_TARGETS), folder / "for_sdxl.safetensors")
    # the embedded model's layer names with SD 1.5's widths (320 channels, 768-wide text)
    save_file({k: torch.zeros(v.shape[0], 320) if "lora_A" in k else torch.zeros(320, v.shape[1])
               for k, v in good.items()}, folder / "sd15_shapes.safetensors")
    save_file({**good, "unet.no_such_block.to_q.lora_A.weight": torch.zeros(2, 64),
               "unet.no_such_block.to_q.lora_B.weight": torch.zeros(64, 2)}, folder / "unknown_keys.safetensors")
    save_file({"model.diffusion_model.input_blocks.1.weight": torch.zeros(4, 4)}, folder / "not_lora.safetensors")
    return folder


@pytest.fixture(scope="module")
def lora_engine(settings, library):
    return Engine(dataclasses.replace(settings, lora_dir=library))


PLAIN = GenerationRequest(prompt="a red square on a white background", seed=5, steps=6)


@pytest.fixture(scope="module")
def plain(lora_engine) -> np.ndarray:
    return np.asarray(lora_engine.generate(PLAIN).images[0].image)


@pytest.mark.parametrize("name, message", [
    ("pickle", "not a valid safetensors file"),
    ("truncated", "points outside the file"),
    ("overclaiming", "not a valid safetensors file"),
    ("huge_header", "header is 50 MB; the limit is 4 MB"),
    ("tensors_30000", "holds 30000 tensors; a LoRA has at most 20000"),
    ("tensors_100000", r"header is \d+ MB; the limit is 4 MB"),  # too big to be worth parsing
    ("nan", "NaN or infinite"),
    ("integers", "floating point"),
    ("for_sdxl", "does not fit this model"),
    ("sd15_shapes", "does not fit this model.*shape"),
    ("unknown_keys", "does not fit this model.*no_such_block.to_q: no such layer"),
    ("not_lora", "not a LoRA this model can take: 'model.diffusion_model"),
])
def test_bad_files_are_refused_before_sampling_and_the_model_is_unchanged(lora_engine, plain, name, message):
    engine = Engine(lora_engine.settings, plugins=lora_engine.plugins)  # a freshly loaded model each time
    pipe = engine.models.get("").pipeline
    good = engine.plugins.plugins["lora"].library.resolve("good").adapter_name
    steps = []  # progress events: a sampling step that ran before the refusal
    with pytest.raises(RequestError, match=message) as refused:
        engine.generate(dataclasses.replace(PLAIN, plugin_units={"lora": [{"name": name}]}), on_progress=steps.append)
    print(f"{name}: refused after {len(steps)} steps: {refused.value}")
    assert not steps  # refused before any model work, not after sampling with it
    # after a good LoRA loaded fresh for the same request: it must not stay switched on after the refusal
    with pytest.raises(RequestError, match=message):
        engine.generate(dataclasses.replace(PLAIN, plugin_units={"lora": [{"name": "good"}, {"name": name}]}))
    assert {n for names in pipe.get_list_adapters().values() for n in names} <= {good}
    assert np.array_equal(np.asarray(engine.generate(PLAIN).images[0].image), plain)


def test_good_file_loads_and_changes_the_image(lora_engine, plain):
    request = dataclasses.replace(PLAIN, plugin_units={"lora": [{"name": "good", "weight": 1.0}]})
    changed = np.asarray(lora_engine.generate(request).images[0].image, dtype=float)
    # random LoRA weights: measured 0.83 at CFG 5 (1.47 at 7); a LoRA that did not apply changes nothing (0.0)
    assert np.abs(changed - plain).mean() > 0.5


def test_text_encoder_lora_for_another_width_is_refused(lora_engine, library, tiny_sdxl_dir):
    from transformers import CLIPTextModel

    tiny_text = CLIPTextModel.from_pretrained(tiny_sdxl_dir / "text_encoder")  # 32 wide; ours is 128
    save_file(random_lora_weights(tiny_text, "text_encoder", TEXT_TARGETS), library / "narrow_text.safetensors")
    request = dataclasses.replace(PLAIN, plugin_units={"lora": [{"name": "narrow_text"}]})
    with pytest.raises(RequestError, match="does not fit this model.*text_encoder.encoder.layers"):
        lora_engine.generate(request)


def test_local_paths_only_when_allowed(lora_engine, library, settings):
    path = str(library / "good.safetensors")
    with pytest.raises(RequestError, match="unknown LoRA") as refused:
        lora_engine.plugins.units_for_request({"lora": [{"name": path}]})
    assert str(library) not in str(refused.value).replace(path, "")  # the library's server path stays private
    allowed = Engine(dataclasses.replace(settings, lora_dir=library, lora_local_paths=True))
    assert allowed.plugins.units_for_request({"lora": [{"name": path}]}) == {"lora": [{"name": path, "weight": 1.0}]}


def test_hub_ids_fail_clearly_offline(lora_engine):
    with pytest.raises(RequestError, match="could not fetch LoRA 'someone/some-lora' from the model hub"):
        lora_engine.plugins.units_for_request({"lora": [{"name": "someone/some-lora"}]})


@pytest.mark.parametrize("metadata, words", [
    ({"t2i_trigger_words": '["zqx", "teal"]'}, ("zqx", "teal")),
    ({"t2i_trigger_words": "zqx, teal style"}, ("zqx", "teal style")),
    ({"ss_tag_frequency": json.dumps({"1_a": {"zqx": 5, "ring": 7}, "2_b": {"zqx": 4}})}, ("zqx", "ring")),
    ({"ss_tag_frequency": "not json"}, ()),
    ({}, ()),
])
def test_trigger_words_from_metadata(metadata, words):
    assert trigger_words(metadata) == words


def test_names_with_spaces_resolve_and_paths_do_not_escape_the_library(lora_engine, library):
    lora = lora_engine.plugins.plugins["lora"]
    (library / "ink wash (v2).safetensors").write_bytes((library / "good.safetensors").read_bytes())
    assert "ink wash (v2)" in lora.choices(lora.params[0])
    assert lora.library.resolve("ink wash (v2)").sha256 == lora.library.resolve("good").sha256
    for name in (f"../{library.name}/good", str(library / "good"), ".hidden"):
        with pytest.raises(RequestError, match="unknown LoRA"):
            lora.library.resolve(name)


def test_a_trained_loras_kohya_copy_is_listed_once(tmp_path):
    library = LoraLibrary(tmp_path, 1 << 20)
    for name in ("style.safetensors", "style.kohya.safetensors", "shared.kohya.safetensors"):
        (tmp_path / name).write_bytes(b"")
    # the kohya copy of a trained LoRA stays loadable by name but is not offered twice;
    # a kohya file with no diffusers sibling is an ordinary LoRA
    assert library.names() == ["shared.kohya", "style"]


@pytest.mark.parametrize("name", ["for_sdxl", "sd15_shapes", "not_lora", "nan"])
def test_an_upload_that_does_not_fit_the_model_is_refused_with_generations_message(lora_engine, library, tmp_path,
                                                                                   name):
    lora = lora_engine.plugins.plugins["lora"]
    model = lora_engine.models.get("")
    with pytest.raises(RequestError) as at_generation:
        lora_engine.generate(dataclasses.replace(PLAIN, plugin_units={"lora": [{"name": name}]}))
    uploads = LoraLibrary(tmp_path, lora.library.max_bytes)
    with pytest.raises(RequestError) as at_upload:
        uploads.add(library / f"{name}.safetensors", name, lambda path, label: lora.fits(model, path, label))
    assert str(at_upload.value) == str(at_generation.value)
    assert uploads.names() == [] and list(tmp_path.iterdir()) == []  # nothing was copied


def test_an_upload_can_be_removed_only_while_it_holds_what_was_uploaded(lora_engine, library, tmp_path):
    uploads = LoraLibrary(tmp_path, 1 << 30)
    model = lora_engine.models.get("")
    lora = lora_engine.plugins.plugins["lora"]
    mine = uploads.add(library / "good.safetensors", "mine", lambda path, label: lora.fits(model, path, label))
    theirs = uploads.add(library / "good.safetensors", "theirs")
    (tmp_path / "theirs.safetensors").write_bytes((library / "nan.safetensors").read_bytes())  # replaced since
    for name, digest in (("theirs", theirs.sha256), ("../mine", mine.sha256), ("mine", "0" * 64)):
        with pytest.raises(RequestError, match="not a LoRA you uploaded"):
            uploads.remove(name, digest)
    uploads.remove("mine", mine.sha256)
    assert uploads.names() == ["theirs"]
