"""LoRA training on a quantised base (TrainingConfig.base_quantization): on tiny Flux.1 and SDXL models the int8
(torchao) base trains through peft's quantised-layer LoRA, with the base's weights measured smaller, the loss falls,
and the exported LoRA loads on the unquantised model and changes its image at weight 1 and not at 0; nf4 asked for
where it cannot run is refused before the model loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from t2i.models.tiny import save_tiny_model
from t2i.request import RequestError
from t2i.train.config import config_from_preset
from t2i.train.quantised_base import base_bytes, check_base_quantization, quantised_layers
from train_family_helpers import RESOLUTION, RUN, fixed_draw_loss, load_pipeline
from test_train_lora import _events, _make_run


def _train_here(tmp_path, monkeypatch, **overrides):
    """Train a run in this process (tiny model, a few steps); returns (run folder, the LoRA's path)."""
    from t2i.train.lora_trainer import train

    for name, value in (("T2I_TRAIN_LOCK", str(tmp_path / "train.lock")), ("T2I_TRAIN_THREADS", "1"),
                        ("T2I_DEVICE", "cpu")):
        monkeypatch.setenv(name, value)
    run = _make_run(tmp_path, **{**RUN, "checkpoint_every": 100, **overrides})
    threads = torch.get_num_threads()
    try:
        return run, train(run, tmp_path / "loras")
    finally:
        torch.set_num_threads(threads)  # the trainer sets its own


@pytest.mark.slow
@pytest.mark.parametrize("family", ["flux1", "sdxl"])
def test_an_int8_base_trains_a_lora_that_works_on_the_full_precision_model(tmp_path, monkeypatch, family):
    model = save_tiny_model(family, tmp_path / "model", **({"variant": "dev"} if family == "flux1" else {}))
    # the tiny UNet's attention LoRA alone lowers this loss by ~2% in 8 steps; its convolutions (not quantised) too
    targets = "attention" if family == "flux1" else "attention+conv"
    run, lora = _train_here(tmp_path, monkeypatch, base_model=str(model), family=family, base_quantization="int8",
                            targets=targets)
    start = next(e for e in _events(run) if e["event"] == "start")
    losses = [e["loss"] for e in _events(run) if e["event"] == "step"]
    pipe = load_pipeline(model)
    denoiser = pipe.transformer if family == "flux1" else pipe.unet
    full_bytes = base_bytes(denoiser)
    print(f"{family}: base {full_bytes} bytes in float32, {start['base_bytes']} as int8")
    # torchao's int8 weight-only quantises the Linear layers (4 bytes a weight -> 1, plus a scale per row): nearly
    # all of the transformer, but the tiny UNet's weights are mostly convolutions, which stay float32
    assert start["base_quantization"] == "int8"
    assert start["base_bytes"] < (0.5 if family == "flux1" else 0.8) * full_bytes
    assert quantised_layers(denoiser) == 0  # the model on disk stays as it was
    assert len(losses) == RUN["steps"] and all(np.isfinite(losses))
    trained = load_file(lora)  # the LoRA on the quantised (int8) attention layers trained: B left its zero start
    assert all(trained[key].abs().max() > 0 for key in trained if ".to_q.lora_B." in key)
    assert any(".to_q.lora_B." in key for key in trained)

    before = fixed_draw_loss(pipe, run)

    def image():
        return np.asarray(pipe("a large red star", num_inference_steps=3, width=RESOLUTION, height=RESOLUTION,
                               generator=torch.Generator().manual_seed(0)).images[0], dtype=np.float32)

    plain = image()
    pipe.load_lora_weights(str(lora), adapter_name="trained")
    after = fixed_draw_loss(pipe, run)
    print(f"{family}: fixed-draw loss on the training images {before:.4f} -> {after:.4f} (unquantised model)")
    assert after < 0.9 * before
    assert np.abs(image() - plain).mean() > 0.01
    pipe.set_adapters(["trained"], [0.0])
    assert np.array_equal(image(), plain)


def test_base_quantization_is_checked_before_the_model_loads():
    with pytest.raises(RequestError, match="base_quantization must be one of none, int8, nf4; got 'int4'"):
        config_from_preset(name="probe", base_quantization="int4")
    assert config_from_preset(name="probe").base_quantization == "none"
    with pytest.raises(RequestError, match="an nf4 base needs bitsandbytes on a CUDA GPU; this run trains on cpu"):
        check_base_quantization("nf4", torch.device("cpu"))
    check_base_quantization("int8", torch.device("cpu"))
    check_base_quantization("none", torch.device("cpu"))


def test_an_nf4_base_from_a_single_file_is_refused_with_the_trainers_own_message(tmp_path, settings,
                                                                                 monkeypatch):
    """bitsandbytes quantises while a diffusers folder loads: single files, GGUF and hub ids are refused by name, on
    any device, before anything loads (not with the generator's T2I_QUANTIZE message)."""
    checkpoint = tmp_path / "my-model.safetensors"
    checkpoint.write_bytes(b"not read")
    cuda = torch.device("cuda")
    for spec, form in ((str(checkpoint), "a single-file checkpoint"), (str(tmp_path / "flux.gguf"), "a GGUF file"),
                       ("owner/model", "a hub id")):
        with pytest.raises(RequestError) as refused:
            check_base_quantization("nf4", cuda, spec, settings)
        message = str(refused.value)
        assert f"an nf4 base is quantised by bitsandbytes while a diffusers folder loads, and {spec!r} is {form}: " \
               "train it with an int8 base" in message and "T2I_QUANTIZE" not in message
    check_base_quantization("int8", cuda, str(checkpoint), settings)  # int8 quantises after loading: any form
    with pytest.raises(RequestError, match="on a CUDA GPU; this run trains on cpu"):  # a folder: the device's turn
        check_base_quantization("nf4", torch.device("cpu"), "embedded", settings)

    from t2i.train.lora_trainer import TrainingStopped

    with pytest.raises(TrainingStopped, match="is a single-file checkpoint: train it with an int8 base"):
        _train_here(tmp_path, monkeypatch, base_model=str(checkpoint), base_quantization="nf4", steps=2)
    assert [e["event"] for e in _events(tmp_path / "run")] == ["error"]  # nothing loaded, no step


def test_an_nf4_run_on_cpu_stops_before_any_step(tmp_path, monkeypatch):
    """The trainer's own refusal (the run's log gets the message, no step, no LoRA)."""
    from t2i.train.lora_trainer import TrainingStopped

    with pytest.raises(TrainingStopped, match="an nf4 base needs bitsandbytes on a CUDA GPU"):
        _train_here(tmp_path, monkeypatch, base_quantization="nf4", steps=2)
    events = _events(tmp_path / "run")
    assert not [e for e in events if e["event"] in ("start", "step")] and events[-1]["event"] == "error"
    assert not (tmp_path / "loras").exists()


def test_the_cli_flag_reaches_the_config():
    from t2i.cli import build_parser
    from t2i.train.command import _overrides

    args = build_parser().parse_args(["train", "--images", "x", "--name", "qlora", "--base-quantization", "int8"])
    assert config_from_preset(args.preset, name=args.name, **_overrides(args)).base_quantization == "int8"
    plain = build_parser().parse_args(["train", "--images", "x", "--name", "qlora"])
    assert config_from_preset(plain.preset, name="qlora", **_overrides(plain)).base_quantization == "none"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--images", "x", "--name", "qlora", "--base-quantization", "fp8"])
