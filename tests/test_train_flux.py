"""Flux.1 LoRA training end to end on a tiny Flux.1-dev model: flow matching on the transformer with CLIP-L trained
too, the loss falls on the training images, the diffusers file loads in our engine and in diffusers, its CLIP part
alone changes the image at weight 1 and not at 0, the kohya file has sd-scripts' Flux names (its CLIP part loads in
diffusers to the same image), kill -9 and resume is bit for bit; runs for another family, or with SD-only options,
are refused."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from t2i.models.tiny import save_tiny_model
from t2i.train.config import TrainingConfig, config_from_preset
from t2i.train.dataset import load_saved
from t2i.train.family_training import FamilyRefused, check_run_family, training_for
from t2i.train.lora_trainer import run_prompts
from t2i.train.quantised_base import base_bytes
from train_family_helpers import (
    RESOLUTION, engine_images, fixed_draw_loss, load_pipeline, same_tensors, train_straight_and_resumed,
)
from test_train_lora import _events, _make_run

# kohya-ss/sd-scripts (commit 48d368fa), networks/lora_flux.py: LORA_PREFIX_FLUX = "lora_unet" over Black Forest
# Labs' module names (DoubleStreamBlock img_attn.qkv/proj, img_mlp.0/2, txt_ twins; SingleStreamBlock linear1/2)
SD_SCRIPTS_NAMES = ["lora_unet_double_blocks_0_img_attn_qkv", "lora_unet_double_blocks_0_img_attn_proj",
                    "lora_unet_double_blocks_0_txt_attn_qkv", "lora_unet_double_blocks_0_img_mlp_0",
                    "lora_unet_double_blocks_0_txt_mlp_2", "lora_unet_single_blocks_0_linear1",
                    "lora_unet_single_blocks_1_linear2"]
# kohya-ss/sd-scripts (commit 450630c6), networks/lora_flux.py LoRANetwork.create_modules: CLIP-L's LoRA modules are
# "lora_te1" + "." + the CLIPAttention / CLIPMLP module path in transformers 4 (text_model.encoder.layers.N.self_attn,
# ...mlp) + "." + the Linear's name, dots as underscores
SD_SCRIPTS_CLIP_NAMES = [f"lora_te1_text_model_encoder_layers_{layer}_{module}" for layer in (0, 1)
                         for module in ("self_attn_q_proj", "self_attn_k_proj", "self_attn_v_proj",
                                        "self_attn_out_proj", "mlp_fc1", "mlp_fc2")]


@pytest.fixture(scope="module")
def flux_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("flux-train")
    model = save_tiny_model("flux1", tmp_path / "model", variant="dev")
    straight, lora, resumed = train_straight_and_resumed(tmp_path, model, train_text_encoder=True, family="flux1",
                                                         text_encoder_lr=2e-2)
    return model, straight, lora, resumed


@pytest.mark.slow
def test_flux_loss_falls_and_the_lora_is_on_the_transformer_and_clip(flux_run):
    model, run, lora, _ = flux_run
    losses = [e["loss"] for e in _events(run) if e["event"] == "step"]
    assert len(losses) == 8 and all(np.isfinite(losses))
    with safe_open(lora, "pt") as handle:
        keys, metadata = list(handle.keys()), handle.metadata()
    assert {key.split(".")[0] for key in keys} == {"transformer", "text_encoder"}  # CLIP-L; T5 never trains
    assert {key.split(".lora_")[0].split(".", 1)[1] for key in keys if key.startswith("text_encoder.")} == {
        f"encoder.layers.{layer}.{module}" for layer in (0, 1) for module in (
            "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2")}
    assert any(".single_transformer_blocks." in key for key in keys) and any(".transformer_blocks." in key for key in keys)
    assert metadata["t2i_family"] == "flux1" and metadata["ss_base_model_version"] == "flux1"
    pipe = load_pipeline(model)
    before = fixed_draw_loss(pipe, run)
    pipe.load_lora_weights(str(lora))
    after = fixed_draw_loss(pipe, run)
    print(f"fixed-draw flow-matching loss on the training images: {before:.4f} -> {after:.4f}")
    assert after < 0.9 * before
    from PIL import Image
    sample = [e for e in _events(run) if e["event"] == "done"][-1]["images"][0]
    assert Image.open(sample).size == (RESOLUTION, RESOLUTION)  # FluxPipeline at the run's size (native: 1024)


@pytest.mark.slow
def test_flux_files_load_and_kohya_names_are_sd_scripts(flux_run, settings, tmp_path):
    model, _, lora, _ = flux_run
    kohya = str(lora).replace(".safetensors", ".kohya.safetensors")
    with safe_open(kohya, "pt") as handle:
        names, metadata = {key.split(".")[0] for key in handle.keys()}, handle.metadata()
    assert set(SD_SCRIPTS_NAMES) <= names and metadata["ss_network_module"] == "networks.lora_flux"
    assert {name for name in names if name.startswith("lora_te")} == set(SD_SCRIPTS_CLIP_NAMES)

    pipe = load_pipeline(model)

    def image():
        return np.asarray(pipe("a large red star", num_inference_steps=3, width=RESOLUTION, height=RESOLUTION,
                               generator=torch.Generator().manual_seed(0)).images[0], dtype=np.float32)

    plain = image()
    pipe.load_lora_weights(str(lora), adapter_name="trained")
    assert np.abs(image() - plain).mean() > 0.01
    pipe.set_adapters(["trained"], [0.0])
    assert np.array_equal(image(), plain)
    pipe.delete_adapters("trained")
    # the kohya file as a whole is not loaded here: diffusers 0.42.1's kohya Flux reader hard-codes Flux.1's real
    # widths when it splits single_blocks_N_linear1 (PITFALLS), so a tiny model's file cannot load;
    # tests/test_kohya_flux.py proves the transformer's conversion exact on the layers it can read

    # CLIP-L's part alone: the diffusers file's text_encoder keys, and the kohya file's lora_te1_ keys (which
    # diffusers' kohya Flux reader loads), change the image at weight 1, identically, and not at weight 0
    clip_only = tmp_path / "clip" / f"{lora.stem}-clip.safetensors"
    clip_only.parent.mkdir()
    with safe_open(lora, "pt") as handle:
        lora_metadata = handle.metadata()
    save_file({k: v for k, v in load_file(lora).items() if k.startswith("text_encoder.")}, clip_only,
              metadata=lora_metadata)
    kohya_clip = tmp_path / "kohya-clip.safetensors"
    save_file({k: v for k, v in load_file(kohya).items() if k.startswith("lora_te1_")}, kohya_clip)
    clip_images = {}
    for name, path in (("diffusers", clip_only), ("kohya", kohya_clip)):
        pipe.load_lora_weights(str(path), adapter_name=name)
        clip_images[name] = image()
        pipe.set_adapters([name], [0.0])
        assert np.array_equal(image(), plain)
        pipe.delete_adapters(name)
    assert np.abs(clip_images["diffusers"] - plain).mean() > 0.01
    assert np.abs(clip_images["kohya"] - clip_images["diffusers"]).max() <= 1.0  # exact up to float rounding

    os.replace(kohya, f"{kohya}.aside")  # our engine's library, the diffusers file alone
    try:
        images = engine_images(settings, lora, model, "tlq, a large red star")
    finally:
        os.replace(f"{kohya}.aside", kohya)
    assert images[f"{lora.stem}:0"] == images["plain"] and images[f"{lora.stem}:1"] != images["plain"]
    assert images["plain again"] == images["plain"]
    clip_images = engine_images(settings, clip_only, model, "tlq, a large red star")  # CLIP-L's part alone
    assert clip_images[f"{clip_only.stem}:0"] == clip_images["plain"]
    assert clip_images[f"{clip_only.stem}:1"] != clip_images["plain"]


@pytest.mark.slow
def test_flux_t5_is_never_on_the_device_with_the_transformer(flux_run):
    """The run's start event: while the text encoders encode, the device holds CLIP and T5; while training,
    everything but T5, and the LoRA (CLIP trains here, so no embedding is cached on the device). T5's sequences for
    every prompt of the run are kept in CPU memory, once (`host_cache_bytes`), so neither stage grows with the number
    of prompts. The peak is the larger of the two, not their sum as when the model loaded whole."""
    model, run, lora, _ = flux_run
    events = _events(run)
    start, done = (next(e for e in events if e["event"] == name) for name in ("start", "done"))
    pipe = load_pipeline(model)
    family = training_for("flux1")
    sequence_bytes = sum(t.untyped_storage().nbytes() for t in family._t5(pipe, "x").values())  # and text ids
    prompts = run_prompts(load_saved(run / "dataset"), TrainingConfig.load(run / "config.json"), done["prompts"])
    cached = len(prompts) * sequence_bytes
    clip, t5 = base_bytes(pipe.text_encoder), base_bytes(pipe.text_encoder_2)
    weights = sum(base_bytes(getattr(pipe, name)) for name in ("transformer", "vae", "text_encoder", "text_encoder_2"))
    lora_bytes = sum(tensor.nbytes for tensor in load_file(lora).values())
    assert start["released_encoders"] == ["text_encoder_2"]
    assert start["stage_bytes"] == {"text_encoders": clip + t5, "training": weights - t5 + lora_bytes}
    assert start["host_cache_bytes"] == cached
    whole = weights + lora_bytes + cached  # the model and the sequences loaded whole onto the device, before stages
    print(f"tiny Flux.1-dev, CLIP trained, {len(prompts)} prompts: device bytes {start['stage_bytes']}, peak "
          f"{max(start['stage_bytes'].values())} against {whole} with the model loaded whole; {cached} bytes of "
          "T5 sequences in CPU memory")
    assert max(start["stage_bytes"].values()) == whole - t5 - cached


@pytest.mark.slow
def test_flux_kill_9_and_resume_continues_bit_for_bit(flux_run):
    _, _, lora, resumed = flux_run
    assert same_tensors(lora, resumed)


def test_a_flux_run_on_an_sdxl_model_stops_before_any_step(tmp_path, monkeypatch):
    """In this process (the refusal comes before any training): the run's log gets the error and no step."""
    from t2i.train.lora_trainer import TrainingStopped, train

    for name, value in (("T2I_TRAIN_LOCK", str(tmp_path / "train.lock")), ("T2I_TRAIN_THREADS", "1"),
                        ("T2I_DEVICE", "cpu")):
        monkeypatch.setenv(name, value)
    model = save_tiny_model("sdxl", tmp_path / "model")
    run = _make_run(tmp_path, base_model=str(model), family="flux1", steps=2, prior_preservation=False)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(TrainingStopped, match=r"this run trains a Flux.1 \(dev, schnell\) LoRA, but the base "
                                                  r"model's family is SDXL"):
            train(run, tmp_path / "loras")
    finally:
        torch.set_num_threads(threads)  # the trainer sets its own
    events = _events(run)
    assert not [e for e in events if e["event"] in ("start", "step")] and events[-1]["event"] == "error"
    assert not (tmp_path / "loras").exists()


def test_run_family_and_flux_only_rules():
    with pytest.raises(FamilyRefused, match="Flux.1 .* LoRA, but the base model's family is Stable Diffusion"):
        check_run_family("flux1", "sd")
    with pytest.raises(FamilyRefused, match="unknown training family 'flux3'; trainable families: sd, sdxl, flux1"):
        check_run_family("flux3", "flux1")
    check_run_family("", "sdxl")
    flux = training_for("flux1")
    for option, message in ((dict(min_snr_gamma=5.0), "min-SNR"), (dict(timestep_bias="low_noise"), "timestep bias")):
        config = config_from_preset(name="probe", **{"train_text_encoder": False, "timestep_bias": "none",
                                                 "min_snr_gamma": 0.0, **option})
        with pytest.raises(FamilyRefused, match=message):
            flux.check(None, config, 1024, [(1024, 1024)])
    # CLIP-L trains when asked (its LoRA on sd-scripts' CLIPAttention + CLIPMLP layers); the preset leaves it off
    flux.check(None, config_from_preset(name="probe", family="flux1", train_text_encoder=True), 1024, [(1024, 1024)])
    assert not config_from_preset(name="probe", family="flux1").train_text_encoder
    assert flux.lora_targets("text_encoder", None) == ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
