"""Flux.1 LoRAs in kohya's format (t2i/train/kohya_flux.py): sd-scripts' key names, exact fused layers, round trip."""

import re

import pytest
import torch
from diffusers import FluxPipeline, FluxTransformer2DModel
from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file

from t2i.models.tiny import build_pipeline
from t2i.train.flux_objective import LORA_TARGETS
from t2i.train.kohya_flux import kohya_flux_metadata, to_kohya_flux

# From kohya-ss/sd-scripts: networks/lora_flux.py names each LoRA "lora_unet_" + the module path with "_" for ".";
# the paths are library/flux_models.py's DoubleStreamBlock (img_mod.lin, img_attn.qkv, img_attn.proj, img_mlp.0,
# img_mlp.2 and the txt_ twins), SingleStreamBlock (linear1, linear2, modulation.lin), the in_dims embedders
# (img_in, time_in/vector_in/guidance_in in_layer and out_layer, txt_in) and LastLayer (linear, adaLN_modulation.1).
SD_SCRIPTS_DOUBLE_BLOCK_0 = [
    "lora_unet_double_blocks_0_img_mod_lin", "lora_unet_double_blocks_0_img_attn_qkv",
    "lora_unet_double_blocks_0_img_attn_proj", "lora_unet_double_blocks_0_img_mlp_0",
    "lora_unet_double_blocks_0_img_mlp_2", "lora_unet_double_blocks_0_txt_mod_lin",
    "lora_unet_double_blocks_0_txt_attn_qkv", "lora_unet_double_blocks_0_txt_attn_proj",
    "lora_unet_double_blocks_0_txt_mlp_0", "lora_unet_double_blocks_0_txt_mlp_2",
]
SD_SCRIPTS_SINGLE_BLOCK_1 = ["lora_unet_single_blocks_1_linear1", "lora_unet_single_blocks_1_linear2",
                             "lora_unet_single_blocks_1_modulation_lin"]
SD_SCRIPTS_OUTSIDE_BLOCKS = [
    "lora_unet_img_in", "lora_unet_txt_in", "lora_unet_time_in_in_layer", "lora_unet_time_in_out_layer",
    "lora_unet_vector_in_in_layer", "lora_unet_vector_in_out_layer", "lora_unet_guidance_in_in_layer",
    "lora_unet_guidance_in_out_layer", "lora_unet_final_layer_linear", "lora_unet_final_layer_adaLN_modulation_1",
]
HIDDEN, MLP = 3072, 12288  # Flux.1's real widths, which diffusers' kohya reader hard-codes for linear1
# every Linear the tiny model has outside the single blocks' q/k/v/MLP input (diffusers cannot split a tiny linear1)
LOADABLE = (r"transformer_blocks\.\d+\.(attn\.(to_[qkv]|to_out\.0|add_[qkv]_proj|to_add_out)"
            r"|ff(_context)?\.net\.(0\.proj|2)|norm1(_context)?\.linear)"
            r"|single_transformer_blocks\.\d+\.(proj_out|norm\.linear)")


def _random_lora(shapes: dict[str, tuple[int, int]], rank: int | dict = 4, dtype=torch.float32) -> dict:
    """peft keys for module -> (out, in) with random A and B, of one rank or a rank per module."""
    generator = torch.Generator().manual_seed(0)
    weights = {}
    for module, (out_features, in_features) in shapes.items():
        module_rank = rank if isinstance(rank, int) else rank[module]
        weights[f"{module}.lora_A.weight"] = torch.randn(module_rank, in_features, generator=generator, dtype=dtype)
        weights[f"{module}.lora_B.weight"] = torch.randn(out_features, module_rank, generator=generator, dtype=dtype)
    return weights


def _update(weights: dict, module: str, scale: float, probe: torch.Tensor) -> torch.Tensor:
    """The weight update scale * B @ A of one module of a peft-keyed LoRA, applied to `probe` (in, n)."""
    return scale * weights[f"{module}.lora_B.weight"] @ (weights[f"{module}.lora_A.weight"] @ probe)


def test_key_names_are_the_ones_sd_scripts_writes():
    transformer = build_pipeline("flux1", "dev").transformer
    shapes = {name: (module.out_features, module.in_features) for name, module in transformer.named_modules()
              if isinstance(module, torch.nn.Linear)}
    kohya = to_kohya_flux(_random_lora(shapes), alpha=4.0)
    modules = {key.split(".")[0] for key in kohya}
    expected = set(SD_SCRIPTS_DOUBLE_BLOCK_0 + SD_SCRIPTS_OUTSIDE_BLOCKS + SD_SCRIPTS_SINGLE_BLOCK_1
                   + [name.replace("blocks_1", "blocks_0") for name in SD_SCRIPTS_SINGLE_BLOCK_1])
    assert modules == expected
    assert set(kohya) == {f"{module}.{suffix}" for module in expected
                          for suffix in ("lora_down.weight", "lora_up.weight", "alpha")}
    assert kohya["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"].shape == (12, 32)  # q, k, v: rank 3x4
    assert kohya["lora_unet_single_blocks_0_linear1.lora_up.weight"].shape == (3 * 32 + 128, 16)
    assert kohya["lora_unet_double_blocks_0_img_attn_qkv.alpha"].item() == 12.0
    assert kohya["lora_unet_double_blocks_0_img_mlp_0.alpha"].item() == 4.0
    metadata = kohya_flux_metadata("dev", 4, 4.0)
    assert metadata["ss_network_module"] == "networks.lora_flux" and metadata["ss_base_model_version"] == "flux1"


def test_fused_layers_are_exact_at_flux_widths_for_fused_loaders_and_diffusers():
    shapes = {f"transformer_blocks.0.attn.{part}": (HIDDEN, HIDDEN)
              for part in ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj")}
    shapes |= {f"single_transformer_blocks.0.attn.to_{part}": (HIDDEN, HIDDEN) for part in "qkv"}
    shapes |= {"single_transformer_blocks.0.proj_mlp": (MLP, HIDDEN), "norm_out.linear": (2 * HIDDEN, HIDDEN),
               "transformer_blocks.1.attn.to_q": (HIDDEN, HIDDEN), "transformer_blocks.1.attn.to_k": (HIDDEN, HIDDEN),
               "proj_out": (64, HIDDEN)}
    ranks = {module: 2 if module == "transformer_blocks.1.attn.to_k" else 4 for module in shapes}  # a rank pattern
    weights = _random_lora(shapes, rank=ranks, dtype=torch.float64)  # float64: equal up to rounding
    alpha = 8.0
    kohya = to_kohya_flux({f"transformer.{key}": value for key, value in weights.items()}, alpha)
    probe = torch.randn(HIDDEN, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def fused_update(name):  # what ComfyUI, Forge and sd-scripts add to the fused weight
        down, up = kohya[f"{name}.lora_down.weight"], kohya[f"{name}.lora_up.weight"]
        return kohya[f"{name}.alpha"] / down.shape[0] * up @ (down @ probe)

    def parts_update(modules, widths=None):  # a part without a LoRA adds nothing to its rows
        widths = widths or [HIDDEN] * len(modules)
        return torch.cat([_update(weights, module, alpha / ranks[module], probe) if module in shapes
                          else torch.zeros(width, 3, dtype=torch.float64) for module, width in zip(modules, widths)])

    block, single = "transformer_blocks.0.attn", "single_transformer_blocks.0"
    torch.testing.assert_close(fused_update("lora_unet_double_blocks_0_img_attn_qkv"),
                               parts_update([f"{block}.to_{part}" for part in "qkv"]))
    torch.testing.assert_close(fused_update("lora_unet_double_blocks_0_txt_attn_qkv"),
                               parts_update([f"{block}.add_{part}_proj" for part in "qkv"]))
    torch.testing.assert_close(fused_update("lora_unet_single_blocks_0_linear1"),
                               parts_update([f"{single}.attn.to_{part}" for part in "qkv"] + [f"{single}.proj_mlp"],
                                            [HIDDEN] * 3 + [MLP]))
    torch.testing.assert_close(fused_update("lora_unet_double_blocks_1_img_attn_qkv"),
                               parts_update([f"transformer_blocks.1.attn.to_{part}" for part in "qkv"]))

    # diffusers' own kohya reader splits every fused layer back into the parts' updates
    back = {key.removeprefix("transformer."): value
            for key, value in _convert_kohya_flux_lora_to_diffusers(dict(kohya)).items()}
    for module in shapes:
        torch.testing.assert_close(_update(back, module, 1.0, probe),
                                   _update(weights, module, alpha / ranks[module], probe), msg=module)
    assert torch.count_nonzero(back["transformer_blocks.1.attn.to_v.lora_B.weight"]) == 0  # v had no LoRA


def test_trainer_targets_on_the_real_flux_architecture_have_the_checkpoint_shapes():
    with torch.device("meta"):  # Flux.1's real configuration, without memory for its weights
        transformer = FluxTransformer2DModel(guidance_embeds=True)
    weights = {}
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and re.fullmatch(LORA_TARGETS, name):
            weights[f"{name}.lora_A.weight"] = torch.empty(16, module.in_features, device="meta")
            weights[f"{name}.lora_B.weight"] = torch.empty(module.out_features, 16, device="meta")
    kohya = to_kohya_flux(weights, alpha=16.0)
    modules = {key.split(".")[0] for key in kohya}
    assert len(modules) == 19 * 8 + 38 * 2  # attention and MLP of 19 double blocks, linear1/2 of 38 single blocks

    def shape(name):  # the weight the LoRA updates: (up rows, down columns)
        return kohya[f"{name}.lora_up.weight"].shape[0], kohya[f"{name}.lora_down.weight"].shape[1]

    # sd-scripts' library/flux_models.py: qkv = Linear(3072, 3 * 3072), mlp 4x, linear1 = Linear(3072, 3 * 3072 +
    # 12288), linear2 = Linear(3072 + 12288, 3072)
    assert shape("lora_unet_double_blocks_18_img_attn_qkv") == (3 * HIDDEN, HIDDEN)
    assert shape("lora_unet_double_blocks_18_txt_mlp_0") == (MLP, HIDDEN)
    assert shape("lora_unet_single_blocks_37_linear1") == (3 * HIDDEN + MLP, HIDDEN)
    assert shape("lora_unet_single_blocks_37_linear2") == (HIDDEN, HIDDEN + MLP)
    assert kohya["lora_unet_single_blocks_37_linear1.alpha"].item() == 4 * 16.0  # rank 4 x 16, same scale


def _transformer_output(pipe) -> torch.Tensor:
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        return pipe.transformer(
            hidden_states=torch.randn(1, 16, 64, generator=generator), timestep=torch.tensor([0.6]),
            guidance=torch.tensor([1.0]), pooled_projections=torch.randn(1, 32, generator=generator),
            encoder_hidden_states=torch.randn(1, 8, 32, generator=generator), txt_ids=torch.zeros(8, 3),
            img_ids=FluxPipeline._prepare_latent_image_ids(1, 4, 4, "cpu", torch.float32), return_dict=False)[0]


def test_round_trip_through_diffusers_load_lora_weights(tmp_path):
    pipe = build_pipeline("flux1", "dev")
    base = _transformer_output(pipe)
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=LOADABLE))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in pipe.transformer.named_parameters():
            if ".lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    trained = _transformer_output(pipe)
    weights = get_peft_model_state_dict(pipe.transformer)
    FluxPipeline.save_lora_weights(tmp_path, transformer_lora_layers=weights,
                                   transformer_lora_adapter_metadata={"r": 4, "lora_alpha": 8,
                                                                      "target_modules": LOADABLE})
    save_file(to_kohya_flux(weights, alpha=8.0), str(tmp_path / "kohya.safetensors"),
              metadata=kohya_flux_metadata("dev", 4, 8.0))

    outputs = {}
    for name in ("pytorch_lora_weights", "kohya"):
        fresh = build_pipeline("flux1", "dev")
        fresh.load_lora_weights(tmp_path / f"{name}.safetensors")
        outputs[name] = _transformer_output(fresh)
    assert (trained - base).abs().max() > 0.1  # the LoRA changes the output
    torch.testing.assert_close(outputs["pytorch_lora_weights"], trained, atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs["kohya"], outputs["pytorch_lora_weights"], atol=1e-5, rtol=0)


def test_what_cannot_be_exported_is_refused():
    lora = _random_lora({"transformer_blocks.0.attn.to_q": (32, 32)})
    with pytest.raises(ValueError, match="no kohya Flux name"):
        to_kohya_flux(_random_lora({"transformer_blocks.0.attn.norm_q": (16, 16)}), 4.0)
    with pytest.raises(ValueError, match="needs both lora_A and lora_B"):
        to_kohya_flux({key: value for key, value in lora.items() if "lora_A" in key}, 4.0)
    with pytest.raises(ValueError, match="not a Flux transformer LoRA weight"):
        to_kohya_flux(lora | {"transformer_blocks.0.attn.to_q.lora_magnitude_vector": torch.ones(32)}, 4.0)
    with pytest.raises(ValueError, match="not a Flux.1 layer"):
        to_kohya_flux(_random_lora({"single_transformer_blocks.0.attn.to_q": (32, 32),
                                    "single_transformer_blocks.0.proj_mlp": (100, 32)}), 4.0)
    assert re.fullmatch(r"lora_unet_double_blocks_0_img_attn_qkv\.(lora_down\.weight|lora_up\.weight|alpha)",
                        next(iter(to_kohya_flux(lora, 4.0))))
