"""Quantised and GGUF weights on tiny models (t2i/models/memory.py, t2i/models/tiny/files.py, the GGUF header check).

Offloading and NF4 need CUDA; here (CPU) the tests check that asking for them is a clear error.
"""

from __future__ import annotations

import json
import random
import struct

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, GGUFQuantizationConfig

from t2i.models.file_checks import read_gguf_header
from t2i.models.memory import apply_memory_policy, choose_policy, load_quantization_config, resident_bytes
from t2i.models.tiny import build_pipeline, save_gguf, save_tiny_model
from t2i.request import RequestError
from t2i.settings import Settings

CPU = torch.device("cpu")
GIB = 1 << 30


def _generate(pipe, seed=0) -> np.ndarray:
    return pipe(prompt="a red circle", num_inference_steps=2, height=64, width=64, output_type="np",
                generator=torch.Generator().manual_seed(seed)).images


@pytest.mark.parametrize("mode", ["int8", pytest.param("int4", marks=pytest.mark.slow)])
def test_quantised_model_runs_with_fewer_resident_bytes(mode):
    plain = build_pipeline("flux1")
    reference, other_seed = _generate(plain), _generate(plain, seed=1)
    pipe = build_pipeline("flux1")
    plan = apply_memory_policy(pipe, Settings(quantize=mode, offload="none"), CPU)
    assert plan.quantize == mode and set(plan.quantized) == {"transformer", "text_encoder_2"}
    before, after = resident_bytes(plain), resident_bytes(pipe)
    assert set(after) == {"cpu"} and after["cpu"] < 0.85 * before["cpu"]
    image = _generate(pipe)
    assert np.array_equal(image, _generate(pipe))  # same request and seed: same bytes
    # near the float32 image: much nearer than another seed's image is
    assert np.abs(image - reference).mean() < 0.2 * np.abs(other_seed - reference).mean()


def test_int8_linear_counts_its_int8_storage():
    pipe = build_pipeline("flux1")
    layer = pipe.transformer.transformer_blocks[0].ff.net[0].proj  # 32 -> 128
    float_bytes = resident_bytes(layer)["cpu"]
    apply_memory_policy(pipe, Settings(quantize="int8", offload="none"), CPU)
    int8_bytes = resident_bytes(layer)["cpu"]
    # 128x32 int8 weights and the bias, plus per-row scales: between a quarter and a half of float32
    assert 0.25 * float_bytes < int8_bytes < 0.5 * float_bytes


def test_quantising_while_loading(tmp_path):
    folder = save_tiny_model("zimage", tmp_path / "zimage")
    model_index = json.loads((folder / "model_index.json").read_text())
    config = load_quantization_config("int8", model_index, CPU)
    assert set(config.quant_mapping) == {"transformer", "text_encoder"}
    pipe = DiffusionPipeline.from_pretrained(folder, quantization_config=config)
    plain = DiffusionPipeline.from_pretrained(folder)
    assert resident_bytes(pipe)["cpu"] < 0.6 * resident_bytes(plain)["cpu"]
    plan = apply_memory_policy(pipe, Settings(quantize="int8", offload="none"), CPU)
    assert plan.quantized == ()  # already quantised while loading: not quantised twice
    assert _generate(pipe).shape == (1, 64, 64, 3)


def test_auto_leaves_a_model_that_fits_alone():
    pipe = build_pipeline("sd")
    plan = apply_memory_policy(pipe, Settings(quantize="auto", offload="auto"), CPU)
    assert (plan.quantize, plan.offload, plan.quantized) == ("none", "none", ())


def test_choose_policy_follows_weights_and_free_memory():
    cuda = torch.device("cuda")
    assert choose_policy(6 * GIB, 4 * GIB, 2, cuda, 24 * GIB)[:2] == ("none", "none")
    assert choose_policy(24 * GIB, 20 * GIB, 2, cuda, 16 * GIB)[:2] == ("int8", "none")  # 12 GiB in int8
    assert choose_policy(40 * GIB, 24 * GIB, 2, cuda, 16 * GIB)[:2] == ("int8", "model")  # largest: 12 GiB
    assert choose_policy(64 * GIB, 48 * GIB, 2, cuda, 16 * GIB)[:2] == ("int8", "group")
    assert choose_policy(40 * GIB, 24 * GIB, 4, CPU, 20 * GIB)[:2] == ("int8", "none")  # CPU never offloads
    assert choose_policy(80 * GIB, 48 * GIB, 4, CPU, 20 * GIB)[:2] == ("int4", "none")


@pytest.mark.parametrize(("setting", "message"), [
    (dict(quantize="none", offload="model"), "T2I_OFFLOAD=model needs a CUDA device; this server runs on cpu"),
    (dict(quantize="none", offload="group"), "T2I_OFFLOAD=group needs a CUDA device"),
    (dict(quantize="nf4", offload="none"), "T2I_QUANTIZE=nf4 needs bitsandbytes on a CUDA device"),
])
def test_what_needs_cuda_is_a_clear_error_on_cpu(setting, message):
    pipe = build_pipeline("sd")
    before = resident_bytes(pipe)
    with pytest.raises(RequestError, match=message):
        apply_memory_policy(pipe, Settings(**setting), CPU)
    assert resident_bytes(pipe) == before  # refused before anything changed


@pytest.mark.parametrize(("family", "quant_type"), [
    ("zimage", "Q8_0"), pytest.param("flux2", "Q8_0", marks=pytest.mark.slow),
    pytest.param("flux2", "Q4_0", marks=pytest.mark.slow), pytest.param("flux1", "Q8_0", marks=pytest.mark.slow),
    pytest.param("sd3", "Q4_0", marks=pytest.mark.slow), pytest.param("qwenimage", "Q8_0", marks=pytest.mark.slow),
])
def test_gguf_loads_and_runs_near_the_float_model(family, quant_type, tmp_path):
    folder = save_tiny_model(family, tmp_path / family)
    path = save_gguf(family, tmp_path / f"{family}.gguf", quant_type)
    header = read_gguf_header(path, max_bytes=1 << 30)
    assert quant_type in {kind for _, kind in header["tensors"].values()}
    plain = DiffusionPipeline.from_pretrained(folder)
    transformer = type(plain.transformer).from_single_file(
        str(path), config=str(folder), subfolder="transformer",
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32))
    pipe = DiffusionPipeline.from_pretrained(folder, transformer=transformer)
    assert resident_bytes(pipe.transformer)["cpu"] < 0.5 * resident_bytes(plain.transformer)["cpu"]
    reference, other_seed, image = _generate(plain), _generate(plain, seed=1), _generate(pipe)
    assert np.array_equal(image, _generate(pipe))
    assert np.abs(image - reference).mean() < 0.3 * np.abs(other_seed - reference).mean()


@pytest.fixture(scope="module")
def gguf_bytes(tmp_path_factory) -> bytes:
    return save_gguf("flux2", tmp_path_factory.mktemp("gguf") / "ok.gguf", "Q8_0").read_bytes()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda data: b"GGUX" + data[4:], "is not a GGUF file"),
    (lambda data: data[:4] + struct.pack("<I", 99) + data[8:], "GGUF version 99 is not supported"),
    (lambda data: data[:8] + struct.pack("<Q", 2**40) + data[16:], "counts do not fit"),
    (lambda data: data[: len(data) // 2], "not a valid GGUF file"),
    (lambda data: b"", "is not a GGUF file"),
])
def test_corrupt_gguf_header_is_refused_with_a_clear_error(gguf_bytes, edit, message, tmp_path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(edit(gguf_bytes))
    with pytest.raises(RequestError, match=message) as refused:
        read_gguf_header(path, max_bytes=1 << 30)
    assert "broken.gguf" in str(refused.value)


def test_gguf_header_check_refuses_or_reads_every_mangled_header(gguf_bytes, tmp_path):
    """Bytes changed in the header give a RequestError or a header read in full, never another exception."""
    rng = random.Random(0)
    path = tmp_path / "mangled.gguf"
    refused = 0
    for _ in range(100):
        data = bytearray(gguf_bytes)
        for _ in range(4):
            data[rng.randrange(24, 3000)] = rng.randrange(256)
        path.write_bytes(bytes(data))
        try:
            read_gguf_header(path, max_bytes=1 << 30)
        except RequestError:
            refused += 1
    assert refused > 50


def test_gguf_over_the_size_limit_is_refused(gguf_bytes, tmp_path):
    path = tmp_path / "big.gguf"
    path.write_bytes(gguf_bytes)
    with pytest.raises(RequestError, match="the limit is 0 MB"):
        read_gguf_header(path, max_bytes=1000)
