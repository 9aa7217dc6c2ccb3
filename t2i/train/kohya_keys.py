"""kohya/A1111 key names for SD 1.x/2.x and SDXL LoRA weights, as kohya-ss/sd-scripts' networks/lora.py names them.

sd-scripts names a LoRA module `prefix + "_" + module path` with dots as underscores. Its prefixes: `lora_unet`, and
`lora_te` for SD's one text encoder or `lora_te1`/`lora_te2` for SDXL's two. Its SD 1.x/2.x UNet has diffusers'
module names (down_blocks...), its SDXL UNet the original (SGM) ones (input_blocks, middle_block, output_blocks),
and its text encoders keep transformers' `text_model.` prefix, which transformers 5 modules no longer have.
"""

from __future__ import annotations

import re

import torch
from diffusers.utils import convert_state_dict_to_kohya

# diffusers' resnet layer names -> the original UNet's (the inverse of diffusers' single-file reader)
SGM_RESNET = {"conv1": "in_layers.2", "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
              "conv_shortcut": "skip_connection"}


def sgm_unet_path(path: str, unet_config) -> str:
    """An SDXL UNet module path in diffusers' names -> the original (SGM) names sd-scripts uses for SDXL."""
    per_block = unet_config["layers_per_block"]
    match = re.match(r"(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.+)", path)
    if match:
        kind, block, part, index, rest = match.group(1), int(match.group(2)), match.group(3), int(match.group(4)), \
            match.group(5)
        if kind == "down_blocks":
            if part == "downsamplers":  # after the block's layers, in its own input block
                return f"input_blocks.{(block + 1) * (per_block + 1)}.0.op"
            row = 1 + block * (per_block + 1) + index
            return f"input_blocks.{row}.{0 if part == 'resnets' else 1}.{_resnet(rest) if part == 'resnets' else rest}"
        layers = per_block + 1  # up blocks have one layer more
        if part == "upsamplers":  # beside the block's last layer: after its attention, if it has one
            has_attention = "CrossAttn" in unet_config["up_block_types"][block]
            return f"output_blocks.{block * layers + per_block}.{2 if has_attention else 1}.conv"
        row = block * layers + index
        return f"output_blocks.{row}.{0 if part == 'resnets' else 1}.{_resnet(rest) if part == 'resnets' else rest}"
    match = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", path)
    if match:
        part, index, rest = match.group(1), int(match.group(2)), match.group(3)
        return f"middle_block.{2 * index}.{_resnet(rest)}" if part == "resnets" else f"middle_block.1.{rest}"
    raise ValueError(f"no SDXL original name for UNet module {path!r}")


def _resnet(rest: str) -> str:
    return SGM_RESNET.get(rest, rest)


def to_kohya(weights: dict[str, torch.Tensor], alpha: float, text_prefixes: dict[str, str] | None = None,
             unet_path=None) -> dict[str, torch.Tensor]:
    """kohya keys for component-prefixed peft weights ("unet.", "text_encoder.", "text_encoder_2.") with alphas.

    `text_prefixes` renames diffusers' `lora_te1_`/`lora_te2_` (default: SD's one `lora_te_`); `unet_path` maps a
    UNet module path to the one sd-scripts uses (default: diffusers' own, as for SD 1.x/2.x).
    """
    text_prefixes = text_prefixes or {"lora_te1_": "lora_te_"}
    if unet_path is not None:
        weights = {_renamed_unet_key(key, unet_path): value for key, value in weights.items()}
    kohya = {}
    for key, value in convert_state_dict_to_kohya(weights).items():
        for diffusers_prefix, prefix in text_prefixes.items():
            if key.startswith(diffusers_prefix):
                key = prefix + "text_model_" + key[len(diffusers_prefix):].removeprefix("text_model_")
        if key.endswith(".alpha"):  # diffusers writes alpha = rank; ours may differ
            value = torch.tensor(float(alpha))
        kohya[key] = value.detach().contiguous().cpu()
    return kohya


def _renamed_unet_key(key: str, unet_path) -> str:
    if not key.startswith("unet."):
        return key
    module, _, leaf = key[len("unet."):].partition(".lora_")
    return f"unet.{unet_path(module)}.lora_{leaf}"
