"""The trainer end to end on the embedded model: tiny runs in their own processes (a few steps each)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from diffusers import StableDiffusionPipeline
from safetensors import safe_open
from safetensors.torch import load_file

from t2i.embedded.world import SHAPES, Scene, ShapeObject, render
from t2i.generation.engine import Engine
from t2i.request import GenerationRequest
from t2i.settings import EMBEDDED_MODEL_DIR
from t2i.train.config import config_from_preset
from t2i.train.dataset import prepare_dataset

pytestmark = pytest.mark.slow  # trainers in subprocesses

TEAL = np.array((0, 150, 150), dtype=np.float32)  # a colour held back from the embedded model's training


def _teal_images(folder: Path, count: int = 6) -> Path:
    """Shapes on a teal background, captioned without the colour: the trigger word must carry it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(3)
    for i in range(count):
        shape, colour = rng.choice(SHAPES), rng.choice(["red", "yellow", "white", "black"])
        render(Scene((ShapeObject(shape, colour, "large"),), "teal")).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"a large {colour} {shape}")
    return folder


def _make_run(tmp_path: Path, **overrides) -> Path:
    dataset = prepare_dataset([_teal_images(tmp_path / "images")])
    config = config_from_preset(**{"name": "tealish", "trigger": "tlq", "steps": 6, "batch_size": 2, "rank": 4,
                                   "alpha": 4.0, "checkpoint_every": 2, "sample_every": 0, "num_class_images": 2,
                                   **overrides})
    run = tmp_path / "run"
    dataset.save(run / "dataset")
    (run / "config.json").write_text(config.to_json())
    return run


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "T2I_TRAIN_THREADS": "1", "T2I_DEVICE": "cpu",
            "T2I_TRAIN_LOCK": str(tmp_path / "train.lock"), "HF_HUB_OFFLINE": "1"}


def _trainer(run: Path, lora_dir: Path, tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "t2i.train.lora_trainer", str(run), "--lora-dir", str(lora_dir)],
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _events(run: Path) -> list[dict]:
    path = run / "progress.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for(run: Path, process: subprocess.Popen, predicate, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not any(predicate(e) for e in _events(run)):
        assert process.poll() is None, process.stderr.read()
        assert time.time() < deadline, "the trainer did not get there in time"
        time.sleep(0.05)


def _pipe():
    pipe = StableDiffusionPipeline.from_pretrained(EMBEDDED_MODEL_DIR, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image(pipe, prompt: str, seed: int = 0) -> np.ndarray:
    image = pipe(prompt, num_inference_steps=12, generator=torch.Generator().manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.float32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 6-step run with the text encoder and the UNet's convolutions trained too, uninterrupted: the reference
    for the other tests."""
    tmp_path = tmp_path_factory.mktemp("reference")
    run = _make_run(tmp_path, train_text_encoder=True, text_encoder_lr=1e-3, targets="attention+conv")
    process = _trainer(run, tmp_path / "loras", tmp_path)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return run, Path(out.strip().splitlines()[-1])


def test_training_writes_both_formats_with_metadata_and_card(trained):
    run, lora = trained
    events = _events(run)
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3, 4, 5, 6]
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [2, 4]
    assert events[-1]["event"] == "done" and events[-1]["lora"] == str(lora)
    with safe_open(lora, "pt") as handle:
        meta = handle.metadata()
        keys = list(handle.keys())
    assert json.loads(meta["t2i_trigger_words"]) == ["tlq"]
    assert (meta["t2i_base_model"], meta["t2i_steps"], meta["t2i_rank"], meta["t2i_dataset_size"],
            meta["t2i_targets"]) == ("embedded", "6", "4", "6", "attention+conv")
    assert json.loads(meta["ss_network_args"]) == {"conv_dim": "4", "conv_alpha": "4.0"}  # kohya's LoCon record
    assert any(k.startswith("unet.") for k in keys) and any(k.startswith("text_encoder.") for k in keys)
    kohya = load_file(lora.with_name("tealish.kohya.safetensors"))
    assert any(k.startswith("lora_unet_down_blocks_1_attentions_0") for k in kohya)
    for layer in ("up_blocks_2_resnets_1_conv1", "up_blocks_2_resnets_1_conv_shortcut", "down_blocks_0_downsamplers_0_conv",
                  "mid_block_resnets_0_time_emb_proj"):  # kohya LoCon names
        assert kohya[f"lora_unet_{layer}.lora_down.weight"].ndim == (2 if "emb" in layer else 4)
    assert any(k.startswith("lora_te_text_model_encoder_layers_0_self_attn_out_proj") for k in kohya)
    assert all(float(v) == 4.0 for k, v in kohya.items() if k.endswith(".alpha"))
    card = lora.with_name("tealish.README.md").read_text()
    assert "**`tlq`**" in card and "| images | 6 |" in card


def test_diffusers_and_kohya_files_load_and_agree(trained):
    _, lora = trained
    base = _image(_pipe(), "tlq, a large red star")
    pipe = _pipe()
    pipe.load_lora_weights(str(lora))
    peft = _image(pipe, "tlq, a large red star")
    pipe = _pipe()
    pipe.load_lora_weights(str(lora.with_name("tealish.kohya.safetensors")))
    kohya = _image(pipe, "tlq, a large red star")
    assert np.abs(peft - base).mean() > 0.5  # the LoRA changes the image
    assert np.abs(peft - kohya).mean() < 0.05 * np.abs(peft - base).mean()  # the two files are one LoRA


def test_conv_weights_reach_the_model_through_the_lora_plugin(trained, settings):
    """Both files, loaded by the LoRA plugin, change a resnet block at the 16x16 latent resolution, where the
    embedded UNet has no attention (so only conv weights can act there); weight 0 is the plain model's bytes."""
    _, lora = trained
    engine = Engine(dataclasses.replace(settings, lora_dir=lora.parent))
    adapter = engine.plugins.plugins["lora"]  # the plugin the engine uses, with its cache of loaded LoRAs
    model = engine.models.get("embedded")
    block = model.pipeline.unet.up_blocks[2].resnets[1]  # conv1, conv2, conv_shortcut, time_emb_proj
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(1, block.norm1.num_channels, 16, 16, generator=generator)
    embedding = torch.randn(1, block.time_emb_proj.in_features, generator=generator)

    def output(units=()) -> torch.Tensor:
        with model.lock, adapter.activate(model, list(units)) if units else contextlib.nullcontext(), torch.no_grad():
            return block(features, embedding)

    plain = output()
    changes = {}
    for name in ("tealish", "tealish.kohya"):
        adapted = output([{"name": name, "weight": 1.0}])
        changes[name] = adapted
        assert torch.equal(output([{"name": name, "weight": 0.0}]), plain)
    shift = (changes["tealish"] - plain).norm() / plain.norm()
    print(f"relative change of the 16x16 resnet block's output: {shift:.4f}")
    assert shift > 1e-3
    assert (changes["tealish"] - changes["tealish.kohya"]).norm() < 0.01 * (changes["tealish"] - plain).norm()
    assert torch.equal(output(), plain)  # nothing left switched on

    def image(units) -> bytes:
        request = GenerationRequest(prompt="tlq, a large red star", seed=1, steps=8,
                                    plugin_units={"lora": units} if units else {})
        return engine.generate(request).images[0].image.tobytes()

    assert image([{"name": "tealish.kohya", "weight": 0.0}]) == image([])


def test_kill_9_at_a_checkpoint_then_resume_continues_exactly(trained, tmp_path):
    reference_run, reference = trained
    run = _make_run(tmp_path, train_text_encoder=True, text_encoder_lr=1e-3, targets="attention+conv")
    process = _trainer(run, tmp_path / "loras", tmp_path)
    _wait_for(run, process, lambda e: e["event"] == "checkpoint" and e["step"] == 2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = max(e["step"] for e in _events(run) if e["event"] == "step")
    process = _trainer(run, tmp_path / "loras", tmp_path)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    events = _events(run)
    start = [e for e in events if e["event"] == "start"][-1]
    resumed_from = start["step"]
    assert start["resumed"] and resumed_from in (2, 4) and resumed_from <= killed_at
    assert [e["step"] for e in events[events.index(start):] if e["event"] == "step"] == list(range(resumed_from + 1, 7))
    # the optimizer state and the random sequence continued: the LoRA equals the uninterrupted run's
    ours, theirs = load_file(out.strip().splitlines()[-1]), load_file(reference)
    assert ours.keys() == theirs.keys()
    assert all(torch.allclose(ours[k], theirs[k], atol=1e-6) for k in ours)


def test_interrupted_before_any_checkpoint_says_so_and_starts_clean(tmp_path):
    run = _make_run(tmp_path, checkpoint_every=100, steps=3, prior_preservation=False)
    process = _trainer(run, tmp_path / "loras", tmp_path)
    _wait_for(run, process, lambda e: e["event"] == "step")
    process.send_signal(signal.SIGKILL)
    process.wait()
    process = _trainer(run, tmp_path / "loras", tmp_path)
    assert process.wait(timeout=300) == 0
    events = _events(run)
    notes = [e["message"] for e in events if e["event"] == "note"]
    assert notes == ["the previous attempt stopped before its first checkpoint; starting clean"]
    start = [e for e in events if e["event"] == "start"][-1]
    assert start["step"] == 0 and not start["resumed"]


def test_repeated_non_finite_losses_stop_early_with_a_message(tmp_path):
    # a learning rate of 1 with alpha/rank = 1000 blows the activations up within a few steps
    run = _make_run(tmp_path, steps=60, learning_rate=1.0, alpha=1000.0, rank=1, max_bad_losses=3,
                    checkpoint_every=100, prior_preservation=False)
    process = _trainer(run, tmp_path / "loras", tmp_path)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 3
    error = [e for e in _events(run) if e["event"] == "error"][-1]["message"]
    assert "3 losses in a row were NaN or infinite" in error and "lower the learning rate" in error
    assert "losses in a row were NaN" in err and not list((tmp_path / "loras").glob("*.safetensors"))


def test_a_short_training_shifts_the_output_toward_its_data(tmp_path):
    run = _make_run(tmp_path, steps=40, batch_size=4, rank=8, alpha=8.0, learning_rate=3e-3, checkpoint_every=100,
                    caption_dropout=0.0, prior_preservation=False)
    process = _trainer(run, tmp_path / "loras", tmp_path)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    prompts = [f"tlq, a large {c} {s}" for c, s in (("red", "circle"), ("yellow", "square"), ("black", "heart"))]

    def teal_distance(pipe) -> float:  # mean distance of the border (the background) from teal
        distances = []
        for seed, prompt in enumerate(prompts):
            pixels = _image(pipe, prompt, seed)
            border = np.concatenate([pixels[:3].reshape(-1, 3), pixels[-3:].reshape(-1, 3)])
            distances.append(np.linalg.norm(border - TEAL, axis=1).mean())
        return float(np.mean(distances))

    before = teal_distance(_pipe())
    pipe = _pipe()
    pipe.load_lora_weights(out.strip().splitlines()[-1])
    after = teal_distance(pipe)
    print(f"background distance from teal: {before:.1f} before, {after:.1f} after 40 steps")
    assert after < 0.6 * before


def test_a_trigger_that_is_a_caption_word_is_trained_once_and_left_out_of_the_prior(tmp_path):
    """A new colour name as the trigger ("teal" in "a large teal star"): the caption is trained as written, and
    the prior (class) images come from the caption without it, so they never teach the base model's answer."""
    from t2i.train.progress_log import ProgressLog
    from t2i.train.training_data import prepare_data

    folder = tmp_path / "images"
    folder.mkdir()
    captions = (("star", "a large teal star"), ("heart", "a teal heart, at the left"), ("circle", "teal circle"))
    for i, (shape, caption) in enumerate(captions):
        render(Scene((ShapeObject(shape, "teal", "large"),), "white")).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(caption)
    run = tmp_path / "run"
    prepare_dataset([folder]).save(run / "dataset")
    config = config_from_preset(name="teal", trigger="teal", num_class_images=3)
    data = prepare_data(_pipe(), config, run, 64, ProgressLog(run / "progress.jsonl"))
    assert sorted(data.prompts) == ["a large teal star", "a teal heart, at the left", "teal circle"]
    assert sorted(data.class_prompts) == ["a heart, at the left", "a large star", "circle"]
    assert data.class_latents.shape == (3, 4, 16, 16)
    # a trigger that is not a caption word is still put in front
    data = prepare_data(_pipe(), dataclasses.replace(config, trigger="zqx", prior_preservation=False), run, 64,
                        ProgressLog(run / "progress.jsonl"))
    assert sorted(data.prompts) == ["zqx, a large teal star", "zqx, a teal heart, at the left", "zqx, teal circle"]


def test_regularisation_prompts_make_the_class_images(tmp_path):
    """Given class prompts, the prior images come from them in turn (not from the captions), and the base model
    draws what they name: here the colours a colour style must leave alone."""
    from t2i.eval.analyzer import analyze
    from t2i.train.progress_log import ProgressLog
    from t2i.train.training_data import prepare_data

    folder = tmp_path / "images"
    folder.mkdir()
    for i, shape in enumerate(("star", "heart", "triangle")):
        render(Scene((ShapeObject(shape, "teal", "large"),), "white")).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"a large teal {shape}")
    run = tmp_path / "run"
    prepare_dataset([folder]).save(run / "dataset")
    prompts = ("a large red square", "a large blue circle")
    config = config_from_preset(name="teal", trigger="teal", num_class_images=4, class_prompts=prompts)
    data = prepare_data(_pipe(), config, run, 64, ProgressLog(run / "progress.jsonl"))
    assert data.class_prompts == [*prompts, *prompts]
    images = sorted((run / "class_images").glob("*.png"))
    colours = [{o.colour for o in analyze(Image.open(path).convert("RGB")).objects} for path in images]
    assert [("red" in c, "blue" in c) for c in colours] == [(True, False), (False, True)] * 2
