"""bench/train_real_arch.py: the real architectures' configs, and its LoRA training step run on tiny configs."""

import math

import pytest
import torch

from bench.train_real_arch import architectures, run_case


@pytest.fixture
def fresh_accelerate_state():
    """Each case makes the trainer's Accelerator with its own mixed precision; accelerate keeps one per process
    (the bench runs each case in its own process), so the state is cleared around each in-process case."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_real_configs_have_the_published_sizes():
    sizes = {name: sum(p.numel() for p in arch.build(torch.device("meta")).parameters())
             for name, arch in architectures(tiny=False).items()}
    # SDXL's UNet as bench/configs builds it (PITFALLS: 2.567B); FLUX.1-dev's transformer: 11.9B
    assert sizes == {"sdxl": 2_567_463_684, "flux1-dev": 11_901_408_320}


@pytest.mark.slow
@pytest.mark.parametrize("case, precision", [
    (("sdxl", "float32", True), None), (("flux1-dev", "bfloat16", True), None), (("flux1-dev", "int8", False), None),
    # a float32 base under bf16 autocast: what the trainer runs on a GPU
    (("flux1-dev", "float32", True), "bf16"), (("sdxl", "float32", False), "bf16")])
def test_tiny_case_trains_the_lora(case, precision, fresh_accelerate_state):
    row = run_case(*case, device=torch.device("cpu"), tiny=True, warmup=1, steps=2, mixed_precision=precision)
    assert row["finite"] and len(row["losses"]) == 3 and len(row["times_s"]) == 2
    assert row["lora_b_norm"] > 0  # LoRA B starts at zero: the steps reached it
    assert 0 < row["trainable_parameters"] < row["parameters"]
    assert row["mixed_precision"] == (precision or ("no" if case[1] == "float32" else "bf16"))
    assert math.isfinite(row["step_s"]) and row["step_s"] > 0
