"""Write a diffusers denoiser's weights in the original key layout that real single files and GGUF files use.

diffusers only reads these layouts (`diffusers.loaders.single_file_utils.convert_*_to_diffusers`); each table
below is the inverse of one reader: ordered rules from a diffusers name to the original name, where q/k/v
weights are fused into one `qkv` tensor (in q, k, v order) and adaLN projections swap their (scale, shift)
halves back to (shift, scale). `to_original_layout` checks itself by running diffusers' own reader on its
output, so a mapping mistake fails here and not later in a test's images.

Flux.1 and Chroma are missing on purpose: diffusers 0.42.1's readers for them hard-code Flux.1's real width
(`inner_dim = 3072`) when they split `single_blocks.N.linear1`, so no tiny model in that layout can load.
"""

from __future__ import annotations

import re

import torch
from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES

QKV = "(?P<part>[qkv])"
SWAP = True  # marks a rule whose tensor swaps its two halves

SD3_RULES = [
    (r"pos_embed\.pos_embed", "pos_embed"),
    (r"pos_embed\.proj\.(\w+)", r"x_embedder.proj.\1"),
    (r"time_text_embed\.timestep_embedder\.linear_1\.(\w+)", r"t_embedder.mlp.0.\1"),
    (r"time_text_embed\.timestep_embedder\.linear_2\.(\w+)", r"t_embedder.mlp.2.\1"),
    (r"time_text_embed\.text_embedder\.linear_1\.(\w+)", r"y_embedder.mlp.0.\1"),
    (r"time_text_embed\.text_embedder\.linear_2\.(\w+)", r"y_embedder.mlp.2.\1"),
    (r"context_embedder\.(\w+)", r"context_embedder.\1"),
    (rf"transformer_blocks\.(\d+)\.attn\.to_{QKV}\.(\w+)", r"joint_blocks.\1.x_block.attn.qkv.\3"),
    (rf"transformer_blocks\.(\d+)\.attn\.add_{QKV}_proj\.(\w+)", r"joint_blocks.\1.context_block.attn.qkv.\3"),
    (rf"transformer_blocks\.(\d+)\.attn2\.to_{QKV}\.(\w+)", r"joint_blocks.\1.x_block.attn2.qkv.\3"),
    (r"transformer_blocks\.(\d+)\.attn(2?)\.norm_([qk])\.(\w+)", r"joint_blocks.\1.x_block.attn\2.ln_\3.\4"),
    (r"transformer_blocks\.(\d+)\.attn\.norm_added_([qk])\.(\w+)", r"joint_blocks.\1.context_block.attn.ln_\2.\3"),
    (r"transformer_blocks\.(\d+)\.attn(2?)\.to_out\.0\.(\w+)", r"joint_blocks.\1.x_block.attn\2.proj.\3"),
    (r"transformer_blocks\.(\d+)\.attn\.to_add_out\.(\w+)", r"joint_blocks.\1.context_block.attn.proj.\2"),
    (r"transformer_blocks\.(\d+)\.norm1\.linear\.(\w+)", r"joint_blocks.\1.x_block.adaLN_modulation.1.\2"),
    # the last block's context norm has two halves (shift, scale), swapped like the final norm
    (r"transformer_blocks\.(\d+)\.norm1_context\.linear\.(\w+)", r"joint_blocks.\1.context_block.adaLN_modulation.1.\2",
     "last_block"),
    (r"transformer_blocks\.(\d+)\.ff\.net\.0\.proj\.(\w+)", r"joint_blocks.\1.x_block.mlp.fc1.\2"),
    (r"transformer_blocks\.(\d+)\.ff\.net\.2\.(\w+)", r"joint_blocks.\1.x_block.mlp.fc2.\2"),
    (r"transformer_blocks\.(\d+)\.ff_context\.net\.0\.proj\.(\w+)", r"joint_blocks.\1.context_block.mlp.fc1.\2"),
    (r"transformer_blocks\.(\d+)\.ff_context\.net\.2\.(\w+)", r"joint_blocks.\1.context_block.mlp.fc2.\2"),
    (r"proj_out\.(\w+)", r"final_layer.linear.\1"),
    (r"norm_out\.linear\.(\w+)", r"final_layer.adaLN_modulation.1.\1", SWAP),
]

# Black Forest Labs' Flux.2 layout (norm weights are called `scale` there)
FLUX2_RULES = [
    (r"x_embedder\.(\w+)", r"img_in.\1"),
    (r"context_embedder\.(\w+)", r"txt_in.\1"),
    (r"time_guidance_embed\.timestep_embedder\.linear_1\.(\w+)", r"time_in.in_layer.\1"),
    (r"time_guidance_embed\.timestep_embedder\.linear_2\.(\w+)", r"time_in.out_layer.\1"),
    (r"time_guidance_embed\.guidance_embedder\.linear_1\.(\w+)", r"guidance_in.in_layer.\1"),
    (r"time_guidance_embed\.guidance_embedder\.linear_2\.(\w+)", r"guidance_in.out_layer.\1"),
    (r"(double_stream_modulation_img|double_stream_modulation_txt|single_stream_modulation)\.linear\.(\w+)",
     r"\1.lin.\2"),
    (r"proj_out\.(\w+)", r"final_layer.linear.\1"),
    (r"norm_out\.linear\.(\w+)", r"final_layer.adaLN_modulation.1.\1", SWAP),
    (rf"transformer_blocks\.(\d+)\.attn\.to_{QKV}\.(\w+)", r"double_blocks.\1.img_attn.qkv.\3"),
    (rf"transformer_blocks\.(\d+)\.attn\.add_{QKV}_proj\.(\w+)", r"double_blocks.\1.txt_attn.qkv.\3"),
    (r"transformer_blocks\.(\d+)\.attn\.norm_q\.weight", r"double_blocks.\1.img_attn.norm.query_norm.scale"),
    (r"transformer_blocks\.(\d+)\.attn\.norm_k\.weight", r"double_blocks.\1.img_attn.norm.key_norm.scale"),
    (r"transformer_blocks\.(\d+)\.attn\.norm_added_q\.weight", r"double_blocks.\1.txt_attn.norm.query_norm.scale"),
    (r"transformer_blocks\.(\d+)\.attn\.norm_added_k\.weight", r"double_blocks.\1.txt_attn.norm.key_norm.scale"),
    (r"transformer_blocks\.(\d+)\.attn\.to_out\.0\.(\w+)", r"double_blocks.\1.img_attn.proj.\2"),
    (r"transformer_blocks\.(\d+)\.attn\.to_add_out\.(\w+)", r"double_blocks.\1.txt_attn.proj.\2"),
    (r"transformer_blocks\.(\d+)\.ff\.linear_in\.(\w+)", r"double_blocks.\1.img_mlp.0.\2"),
    (r"transformer_blocks\.(\d+)\.ff\.linear_out\.(\w+)", r"double_blocks.\1.img_mlp.2.\2"),
    (r"transformer_blocks\.(\d+)\.ff_context\.linear_in\.(\w+)", r"double_blocks.\1.txt_mlp.0.\2"),
    (r"transformer_blocks\.(\d+)\.ff_context\.linear_out\.(\w+)", r"double_blocks.\1.txt_mlp.2.\2"),
    (r"single_transformer_blocks\.(\d+)\.attn\.to_qkv_mlp_proj\.(\w+)", r"single_blocks.\1.linear1.\2"),
    (r"single_transformer_blocks\.(\d+)\.attn\.to_out\.(\w+)", r"single_blocks.\1.linear2.\2"),
    (r"single_transformer_blocks\.(\d+)\.attn\.norm_q\.weight", r"single_blocks.\1.norm.query_norm.scale"),
    (r"single_transformer_blocks\.(\d+)\.attn\.norm_k\.weight", r"single_blocks.\1.norm.key_norm.scale"),
]

# Tongyi's Z-Image layout: fused qkv, `out` for the output projection, one patch size without the `2-1` suffix
ZIMAGE_RULES = [
    (r"all_final_layer\.2-1\.(.+)", r"final_layer.\1"),
    (r"all_x_embedder\.2-1\.(.+)", r"x_embedder.\1"),
    (rf"(.+)\.attention\.to_{QKV}\.weight", r"\1.attention.qkv.weight"),
    (r"(.+)\.attention\.to_out\.0\.(\w+)", r"\1.attention.out.\2"),
    (r"(.+)\.attention\.norm_([qk])\.weight", r"\1.attention.\2_norm.weight"),
    (r"(.+)", r"\1"),
]

# Qwen-Image was released in diffusers' own names: its single files and GGUFs keep them
LAYOUTS = {"sd3": SD3_RULES, "flux2": FLUX2_RULES, "zimage": ZIMAGE_RULES, "qwenimage": [(r"(.+)", r"\1")]}


def _swap_halves(tensor: torch.Tensor) -> torch.Tensor:
    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def to_original_layout(family: str, model) -> dict[str, torch.Tensor]:
    """The denoiser `model`'s weights under the original names of `family`'s released checkpoints."""
    if family not in LAYOUTS:
        raise ValueError(f"no original single-file layout for {family!r}; it exists for {', '.join(LAYOUTS)}")
    state = {name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()}
    last_block = max((int(m.group(1)) for k in state if (m := re.match(r"transformer_blocks\.(\d+)\.", k))), default=-1)
    fused: dict[str, dict[int, torch.Tensor]] = {}
    original: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        for pattern, template, *flags in LAYOUTS[family]:
            match = re.fullmatch(pattern, name)
            if match is None:
                continue
            new_name = match.expand(template)
            swap = SWAP in flags or ("last_block" in flags and int(match.group(1)) == last_block)
            tensor = _swap_halves(tensor) if swap else tensor
            if "part" in match.groupdict():
                fused.setdefault(new_name, {})["qkv".index(match.group("part"))] = tensor
            else:
                original[new_name] = tensor
            break
        else:
            raise ValueError(f"{family}: no original name for {name}")
    original.update({name: torch.cat([parts[i] for i in range(3)]) for name, parts in fused.items()})
    _check_round_trip(model, original, state)
    return original


def _check_round_trip(model, original: dict, state: dict) -> None:
    """Run diffusers' own reader on `original`; it must give back exactly the model's weights."""
    reader = SINGLE_FILE_LOADABLE_CLASSES[type(model).__name__]["checkpoint_mapping_fn"]
    converted = reader(dict(original), config=model.config)
    mismatched = sorted(set(converted) ^ set(state)) or [k for k in state if not torch.equal(converted[k], state[k])]
    if mismatched:
        raise AssertionError(f"original layout does not read back through diffusers: {mismatched[:5]}")
