"""A diffusers-keyed Flux.1 LoRA in the kohya (sd-scripts) Flux format that ComfyUI and Forge load.

kohya names Black Forest Labs' modules: `lora_unet_double_blocks_0_img_attn_qkv`, `..._single_blocks_0_linear1`,
each with `.lora_down.weight`, `.lora_up.weight` and `.alpha` (the LoRA is scaled by alpha / rank). Where BFL
fuses layers that diffusers keeps apart (q, k, v in the double blocks; q, k, v and the MLP input in the single
blocks' `linear1`), the parts' LoRAs become one LoRA of n times the rank, exactly:

    lora_down = [A_1; ...; A_n]    (rows stacked)        lora_up = diag(B_1, ..., B_n)    (block diagonal)
    lora_up @ lora_down = [B_1 A_1; ...; B_n A_n]         = the parts' updates, stacked like the fused weight

This is what sd-scripts' own `split_qkv` networks save, and what diffusers' `_convert_kohya_flux_lora_to_diffusers`
recognises as "sparse" (a rank divisible by n with zero off-diagonal blocks) and splits back into the parts.
"""

from __future__ import annotations

import re

import torch

# diffusers module (in FluxTransformer2DModel) -> kohya module, one to one
DIRECT_NAMES = [
    (r"transformer_blocks\.(\d+)\.attn\.to_out\.0", r"double_blocks_\1_img_attn_proj"),
    (r"transformer_blocks\.(\d+)\.attn\.to_add_out", r"double_blocks_\1_txt_attn_proj"),
    (r"transformer_blocks\.(\d+)\.ff\.net\.0\.proj", r"double_blocks_\1_img_mlp_0"),
    (r"transformer_blocks\.(\d+)\.ff\.net\.2", r"double_blocks_\1_img_mlp_2"),
    (r"transformer_blocks\.(\d+)\.ff_context\.net\.0\.proj", r"double_blocks_\1_txt_mlp_0"),
    (r"transformer_blocks\.(\d+)\.ff_context\.net\.2", r"double_blocks_\1_txt_mlp_2"),
    (r"transformer_blocks\.(\d+)\.norm1\.linear", r"double_blocks_\1_img_mod_lin"),
    (r"transformer_blocks\.(\d+)\.norm1_context\.linear", r"double_blocks_\1_txt_mod_lin"),
    (r"single_transformer_blocks\.(\d+)\.proj_out", r"single_blocks_\1_linear2"),
    (r"single_transformer_blocks\.(\d+)\.norm\.linear", r"single_blocks_\1_modulation_lin"),
    (r"x_embedder", "img_in"),
    (r"context_embedder", "txt_in"),
    (r"time_text_embed\.timestep_embedder\.linear_1", "time_in_in_layer"),
    (r"time_text_embed\.timestep_embedder\.linear_2", "time_in_out_layer"),
    (r"time_text_embed\.text_embedder\.linear_1", "vector_in_in_layer"),
    (r"time_text_embed\.text_embedder\.linear_2", "vector_in_out_layer"),
    (r"time_text_embed\.guidance_embedder\.linear_1", "guidance_in_in_layer"),
    (r"time_text_embed\.guidance_embedder\.linear_2", "guidance_in_out_layer"),
    (r"proj_out", "final_layer_linear"),
    (r"norm_out\.linear", "final_layer_adaLN_modulation_1"),
]
# diffusers module -> kohya fused module; the second group names the part ("q" in the double blocks' attention,
# "attn.to_q" or "proj_mlp" in the single blocks), FUSED_PARTS their order in the fused layer's output
FUSED_NAMES = [
    (r"transformer_blocks\.(\d+)\.attn\.to_([qkv])", r"double_blocks_\1_img_attn_qkv"),
    (r"transformer_blocks\.(\d+)\.attn\.add_([qkv])_proj", r"double_blocks_\1_txt_attn_qkv"),
    (r"single_transformer_blocks\.(\d+)\.(attn\.to_[qkv]|proj_mlp)", r"single_blocks_\1_linear1"),
]
FUSED_PARTS = {"qkv": ["q", "k", "v"], "linear1": ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"]}
FUSED_WIDTHS = {"qkv": [1, 1, 1], "linear1": [1, 1, 1, 4]}  # Flux.1's single blocks: MLP 4x the hidden size


def _split_key(key: str) -> tuple[str, str]:
    """'transformer.<module>.lora_A.weight' (prefix optional) -> (module, 'A' or 'B')."""
    match = re.fullmatch(r"(?:transformer\.)?(.+)\.lora_([AB])\.weight", key)
    if not match:
        raise ValueError(f"not a Flux transformer LoRA weight: {key!r} (expected <module>.lora_A/B.weight; "
                         "DoRA, rsLoRA and text-encoder LoRAs are not exported to the kohya Flux format)")
    return match.group(1), match.group(2)


def _swap_halves(weight: torch.Tensor) -> torch.Tensor:
    """diffusers' final norm emits (scale, shift) where BFL's final layer emits (shift, scale)."""
    first, second = weight.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _kohya_module(module: str) -> tuple[str, str | None]:
    """(kohya module name, part name or None) for a diffusers Flux transformer module."""
    for pattern, template in FUSED_NAMES:
        if match := re.fullmatch(pattern, module):
            return "lora_unet_" + match.expand(template), match.group(2)
    for pattern, template in DIRECT_NAMES:
        if match := re.fullmatch(pattern, module):
            return "lora_unet_" + match.expand(template), None
    raise ValueError(f"no kohya Flux name for the transformer module {module!r}")


def _fused(parts: dict[str, tuple[torch.Tensor, torch.Tensor]], kind: str, alpha: float, name: str):
    """One kohya LoRA (down, up, alpha) for the fused layer from its parts' (A, B); missing parts stay zero."""
    order = FUSED_PARTS[kind]
    down_any, up_any = next(iter(parts.values()))
    hidden = down_any.shape[1]
    widths = [hidden * factor for factor in FUSED_WIDTHS[kind]]
    rank = max(down.shape[0] for down, _ in parts.values())
    # each part's scale alpha / r_part is carried by its up block; the fused alpha restores the first part's scale
    reference_scale = alpha / next(iter(parts.values()))[0].shape[0]
    down = down_any.new_zeros(len(order) * rank, hidden)
    up = up_any.new_zeros(sum(widths), len(order) * rank)
    row = 0
    for index, (part, width) in enumerate(zip(order, widths)):
        if part in parts:
            part_down, part_up = parts[part]
            if part_down.shape[1] != hidden or part_up.shape[0] != width:
                raise ValueError(f"{name}: the {part} LoRA is {tuple(part_up.shape)} x {tuple(part_down.shape)}, "
                                 f"not a Flux.1 layer of {hidden} -> {width}")
            part_rank = part_down.shape[0]
            down[index * rank:index * rank + part_rank] = part_down
            up[row:row + width, index * rank:index * rank + part_rank] = part_up * (alpha / part_rank / reference_scale)
        row += width
    return down, up, torch.tensor(reference_scale * len(order) * rank, dtype=torch.float32)


def to_kohya_flux(weights: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """kohya Flux keys for a Flux.1 transformer LoRA in peft/diffusers keys, with the LoRA's `lora_alpha`.

    `weights` is what `get_peft_model_state_dict(transformer)` gives (or a diffusers file's `transformer.` keys);
    each module's scale is alpha / its rank, as peft applies it. The result applies the same update to every layer.
    """
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in weights.items():
        module, matrix = _split_key(key)
        modules.setdefault(module, {})[matrix] = tensor
    kohya: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}
    for module, pair in sorted(modules.items()):
        if set(pair) != {"A", "B"}:
            raise ValueError(f"{module}: a LoRA needs both lora_A and lora_B, found only lora_{''.join(pair)}")
        if pair["A"].shape[0] != pair["B"].shape[1]:
            raise ValueError(f"{module}: lora_A has rank {pair['A'].shape[0]}, lora_B {pair['B'].shape[1]}")
        name, part = _kohya_module(module)
        if part is not None:
            fused.setdefault(name, {})[part] = (pair["A"], pair["B"])
            continue
        up, module_alpha = pair["B"], float(alpha)
        if "final_layer" in name:
            # diffusers' kohya reader ignores the final layer's alpha (loads it at scale 1): carry the scale in up
            up, module_alpha = up * (alpha / pair["A"].shape[0]), float(pair["A"].shape[0])
        if name.endswith("final_layer_adaLN_modulation_1"):
            up = _swap_halves(up)
        kohya[f"{name}.lora_down.weight"] = pair["A"].contiguous()
        kohya[f"{name}.lora_up.weight"] = up.contiguous()
        kohya[f"{name}.alpha"] = torch.tensor(module_alpha, dtype=torch.float32)
    for name, parts in fused.items():
        kind = "qkv" if name.endswith("qkv") else "linear1"
        down, up, fused_alpha = _fused(parts, kind, alpha, name)
        kohya[f"{name}.lora_down.weight"] = down
        kohya[f"{name}.lora_up.weight"] = up
        kohya[f"{name}.alpha"] = fused_alpha
    return kohya


def kohya_flux_metadata(variant: str, rank: int, alpha: float) -> dict[str, str]:
    """The safetensors metadata sd-scripts writes for a Flux.1 LoRA (network module, base version, modelspec)."""
    if variant not in ("dev", "schnell"):
        raise ValueError(f"Flux.1 variants are 'dev' and 'schnell', not {variant!r}")
    return {"ss_network_module": "networks.lora_flux", "ss_base_model_version": "flux1",
            "ss_network_dim": str(rank), "ss_network_alpha": str(alpha),
            "modelspec.architecture": f"flux-1-{variant}/lora",
            "modelspec.implementation": "https://github.com/black-forest-labs/flux"}
