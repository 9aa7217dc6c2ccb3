"""SDXL LoRA training end to end on a tiny SDXL model: both text encoders trained, the loss falls on the training
images, the diffusers and kohya files load in our engine and in diffusers, kill -9 and resume is bit for bit (with
EMA, a warmup schedule, tag shuffle, noise offset and min-SNR on)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open

from t2i.models.tiny import save_tiny_model
from t2i.train.config import config_from_preset
from t2i.train.family_training import FamilyRefused, training_for
from train_family_helpers import (
    RESOLUTION, engine_images, fixed_draw_loss, load_pipeline, same_tensors, train_straight_and_resumed,
)
from test_train_lora import _events

# kohya-ss/sd-scripts (commit 48d368fa), networks/lora.py: LORA_PREFIX_UNET = "lora_unet", LORA_PREFIX_TEXT_ENCODER1
# = "lora_te1", LORA_PREFIX_TEXT_ENCODER2 = "lora_te2"; a module's name is prefix + "." + its path with "." -> "_".
# Its SDXL UNet (library/sdxl_original_unet.py) has the original layout: input_blocks.N.M, middle_block.N,
# output_blocks.N.M; its text encoders keep transformers' "text_model." prefix. For the tiny UNet (layers_per_block
# 1, blocks (DownBlock2D, CrossAttnDownBlock2D)), input block 3 is the second level's first layer, output blocks 0
# and 1 the first up level's: so sd-scripts writes these names for its Transformer2DModel and CLIP modules.
SD_SCRIPTS_NAMES = [
    "lora_unet_input_blocks_3_1_proj_in", "lora_unet_input_blocks_3_1_transformer_blocks_0_attn1_to_q",
    "lora_unet_input_blocks_3_1_transformer_blocks_0_attn2_to_out_0",
    "lora_unet_input_blocks_3_1_transformer_blocks_0_ff_net_0_proj", "lora_unet_middle_block_1_proj_out",
    "lora_unet_middle_block_1_transformer_blocks_0_attn2_to_k", "lora_unet_output_blocks_0_1_proj_in",
    "lora_unet_output_blocks_1_1_transformer_blocks_0_ff_net_2",
    "lora_te1_text_model_encoder_layers_0_self_attn_q_proj", "lora_te1_text_model_encoder_layers_1_mlp_fc2",
    "lora_te2_text_model_encoder_layers_0_self_attn_out_proj", "lora_te2_text_model_encoder_layers_1_mlp_fc1",
    # with the convolutions (LoCon): sdxl_original_unet.py's ResnetBlock2D in_layers/emb_layers/out_layers/
    # skip_connection, Downsample2D op, Upsample2D conv
    "lora_unet_input_blocks_1_0_in_layers_2", "lora_unet_input_blocks_1_0_emb_layers_1", "lora_unet_input_blocks_2_0_op",
    "lora_unet_middle_block_0_out_layers_3", "lora_unet_output_blocks_0_0_skip_connection",
    "lora_unet_output_blocks_1_2_conv",
]
# train_network.py's metadata keys (the same commit) that a finished run writes
SD_SCRIPTS_METADATA = ["ss_network_module", "ss_network_dim", "ss_network_alpha", "ss_base_model_version",
                       "ss_output_name", "ss_learning_rate", "ss_text_encoder_lr", "ss_max_train_steps",
                       "ss_num_train_images", "ss_seed", "ss_resolution", "ss_tag_frequency"]


@pytest.fixture(scope="module")
def sdxl_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("sdxl-train")
    model = save_tiny_model("sdxl", tmp_path / "model")
    # with the training options whose state a resume must restore or replay: EMA, the warmup schedule, the tag
    # shuffle's and the noise offset's draws (and min-SNR weights)
    straight, lora, resumed = train_straight_and_resumed(
        tmp_path, model, train_text_encoder=True, text_encoder_lr=1e-3, family="sdxl", targets="attention+conv",
        ema_decay=0.5, lr_scheduler="constant_with_warmup", lr_warmup_steps=1, noise_offset=0.05, shuffle_tags=True,
        min_snr_gamma=5.0)
    return model, straight, lora, resumed


@pytest.mark.slow
def test_sdxl_trains_both_encoders_and_the_loss_falls(sdxl_run):
    model, run, lora, _ = sdxl_run
    losses = [e["loss"] for e in _events(run) if e["event"] == "step"]
    assert len(losses) == 8 and all(np.isfinite(losses))
    with safe_open(lora, "pt") as handle:
        keys, metadata = list(handle.keys()), handle.metadata()
    assert {key.split(".")[0] for key in keys} == {"unet", "text_encoder", "text_encoder_2"}
    assert metadata["t2i_family"] == "sdxl" and metadata["ss_base_model_version"] == "sdxl_base_v1-0"
    pipe = load_pipeline(model)
    before = fixed_draw_loss(pipe, run)
    pipe.load_lora_weights(str(lora))
    after = fixed_draw_loss(pipe, run)
    print(f"fixed-draw loss on the training images: {before:.4f} -> {after:.4f}")
    assert after < 0.9 * before
    sample = [e for e in _events(run) if e["event"] == "done"][-1]["images"][0]
    from PIL import Image
    assert Image.open(sample).size == (RESOLUTION, RESOLUTION)  # made by the SDXL pipeline at the run's size


@pytest.mark.slow
def test_sdxl_kohya_file_has_sd_scripts_names_and_metadata(sdxl_run):
    _, _, lora, _ = sdxl_run
    with safe_open(str(lora).replace(".safetensors", ".kohya.safetensors"), "pt") as handle:
        names, metadata = {key.split(".")[0] for key in handle.keys()}, handle.metadata()
        suffixes = {key.split(".", 1)[1] for key in handle.keys()}
    assert set(SD_SCRIPTS_NAMES) <= names
    assert all(name.startswith(("lora_unet_", "lora_te1_text_model_", "lora_te2_text_model_")) for name in names)
    assert suffixes == {"lora_down.weight", "lora_up.weight", "alpha"}
    assert set(SD_SCRIPTS_METADATA) <= set(metadata)
    assert metadata["ss_network_module"] == "networks.lora" and metadata["t2i_family"] == "sdxl"


@pytest.mark.slow
def test_sdxl_files_load_in_diffusers_and_our_engine(sdxl_run, settings):
    model, _, lora, _ = sdxl_run
    pipe = load_pipeline(model)

    def image():
        return np.asarray(pipe("a large red star", num_inference_steps=3,
                               generator=torch.Generator().manual_seed(0)).images[0], dtype=np.float32)

    plain, loaded = image(), {}
    for name, path in (("diffusers", lora), ("kohya", str(lora).replace(".safetensors", ".kohya.safetensors"))):
        pipe.load_lora_weights(str(path), adapter_name=name)
        pipe.set_adapters([name], [1.0])
        loaded[name] = image()
        pipe.set_adapters([name], [0.0])
        assert np.array_equal(image(), plain)
    assert np.abs(loaded["diffusers"] - plain).mean() > 1.0
    # the kohya file's original (SGM) names, convolutions included, map back onto the same layers
    assert np.abs(loaded["diffusers"] - loaded["kohya"]).max() <= 1.0

    images = engine_images(settings, lora, model, "tlq, a large red star")
    for name in (lora.stem, f"{lora.stem}.kohya"):
        assert images[f"{name}:0"] == images["plain"] and images[f"{name}:1"] != images["plain"]
    assert images["plain again"] == images["plain"]


@pytest.mark.slow
def test_sdxl_kill_9_and_resume_continues_bit_for_bit(sdxl_run):
    _, _, lora, resumed = sdxl_run
    assert same_tensors(lora, resumed)
    assert same_tensors(str(lora).replace(".safetensors", ".kohya.safetensors"),
                        str(resumed).replace(".safetensors", ".kohya.safetensors"))


def test_sdxl_refuses_images_under_a_quarter_of_its_native_size():
    """Real SDXL (native 1024 px): images under 256 px are refused before any step; the rule scales with the
    model's native size, so a 64-px tiny model takes images down to 16 px."""
    family, config = training_for("sdxl"), config_from_preset(name="probe")
    with pytest.raises(FamilyRefused, match=r"at least 256 px .* 1024 px.*200x300"):
        family.check(None, config, 1024, [(1024, 1024), (200, 300)])
    family.check(None, config, 1024, [(256, 400)])
    family.check(None, config, 64, [(32, 32)])
    with pytest.raises(FamilyRefused, match="resolution of at least 256"):
        family.check(None, config_from_preset(name="probe", resolution=128), 1024, [(1024, 1024)])


def test_a_family_that_cannot_train_is_named_with_the_trainable_ones():
    with pytest.raises(FamilyRefused, match=r"does not support Z-Image.*Stable Diffusion 1.x/2.x, SDXL.*Flux.1"):
        training_for("zimage")
