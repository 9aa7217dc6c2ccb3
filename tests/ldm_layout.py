"""Test helper: write a diffusers SD pipeline as one original-layout (LDM, A1111/Civitai-style) .safetensors file.

diffusers only reads this layout (`diffusers.loaders.single_file_utils`); this is the inverse of its readers,
built from the same tables: `DIFFUSERS_TO_LDM_MAPPING` for the fixed keys, the block-index arithmetic of
`convert_ldm_unet_checkpoint` / `convert_ldm_vae_checkpoint`, and `LDM_*` prefixes. `to_ldm_state_dict` checks
itself by running diffusers' own readers on its output, so a mapping mistake fails here, not in a test's images.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from diffusers.loaders.single_file_utils import (
    DIFFUSERS_TO_LDM_MAPPING, LDM_CLIP_PREFIX_TO_REMOVE, LDM_UNET_KEY, LDM_VAE_KEYS, convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint,
)
from safetensors.torch import save_file

# the renames inside a block, inverted from update_unet_resnet_ldm_to_diffusers / update_vae_*_ldm_to_diffusers
UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
               "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
CLIP_PREFIX = LDM_CLIP_PREFIX_TO_REMOVE[0] + "text_model."  # SD 1.x: cond_stage_model.transformer.text_model.


def _rename(rest: str, renames: dict[str, str]) -> str:
    module, _, leaf = rest.rpartition(".")
    return renames.get(module, module) + "." + leaf


def unet_key(key: str, config) -> str:
    """The LDM name (without `model.diffusion_model.`) of a diffusers UNet2DConditionModel weight."""
    fixed = {**DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"], **DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"]}
    if key in fixed:
        return fixed[key]
    slots = config.layers_per_block + 1  # each LDM level: layers_per_block layers, then the down/upsampler
    if match := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, layer, rest = int(match[1]), match[2], int(match[3]), match[4]
        index = 1 + block * slots + layer
        return f"input_blocks.{index}.0.{_rename(rest, UNET_RESNET)}" if kind == "resnets" \
            else f"input_blocks.{index}.1.{rest}"
    if match := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)", key):
        return f"input_blocks.{1 + int(match[1]) * slots + config.layers_per_block}.0.op.{match[2]}"
    if match := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(match[1])}.{_rename(match[2], UNET_RESNET)}"
    if match := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{match[1]}"
    if match := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, layer, rest = int(match[1]), match[2], int(match[3]), match[4]
        index = block * slots + layer
        return f"output_blocks.{index}.0.{_rename(rest, UNET_RESNET)}" if kind == "resnets" \
            else f"output_blocks.{index}.1.{rest}"
    if match := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)", key):
        block = int(match[1])
        # the upsampler follows the block's last layer: after its resnet, and its attention if it has one
        position = 2 if "CrossAttn" in config.up_block_types[block] else 1
        return f"output_blocks.{block * slots + config.layers_per_block}.{position}.conv.{match[2]}"
    raise KeyError(f"no LDM name for UNet weight {key!r}")


def vae_key(key: str, config) -> str:
    """The LDM name (without `first_stage_model.`) of a diffusers AutoencoderKL weight."""
    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    if key in fixed:
        return fixed[key]
    if match := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{match[1]}.block.{match[2]}.{_rename(match[3], VAE_RESNET)}"
    if match := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)", key):
        return f"encoder.down.{match[1]}.downsample.conv.{match[2]}"
    if match := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        level = len(config.up_block_types) - 1 - int(match[1])  # LDM counts decoder levels from the bottom
        return f"decoder.up.{level}.block.{match[2]}.{_rename(match[3], VAE_RESNET)}"
    if match := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)", key):
        return f"decoder.up.{len(config.up_block_types) - 1 - int(match[1])}.upsample.conv.{match[2]}"
    if match := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{match[1]}.mid.block_{int(match[2]) + 1}.{_rename(match[3], VAE_RESNET)}"
    if match := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
        return f"{match[1]}.mid.attn_1.{_rename(match[2], VAE_ATTENTION)}"
    raise KeyError(f"no LDM name for VAE weight {key!r}")


def to_ldm_state_dict(pipe) -> dict[str, torch.Tensor]:
    """An SD 1.x/2.x-style pipeline's UNet, VAE and CLIP text encoder as one LDM-layout state dict."""
    unet, vae = pipe.unet.state_dict(), pipe.vae.state_dict()
    text = pipe.text_encoder.state_dict()
    ldm = {LDM_UNET_KEY + unet_key(k, pipe.unet.config): v for k, v in unet.items()}
    for key, value in vae.items():
        if ".mid_block.attentions." in key and value.ndim == 2:
            value = value[:, :, None, None]  # LDM's VAE attention projections are 1x1 convolutions
        ldm[LDM_VAE_KEYS[0] + vae_key(key, pipe.vae.config)] = value
    ldm.update({CLIP_PREFIX + key.removeprefix("text_model."): value for key, value in text.items()})
    ldm = {key: value.detach().contiguous() for key, value in ldm.items()}
    _check_round_trip(ldm, pipe, unet, vae, text)
    return ldm


def _check_round_trip(ldm, pipe, unet, vae, text):
    """diffusers' own readers must give back every original name and tensor, and nothing else."""
    readers = {
        "unet": (convert_ldm_unet_checkpoint(ldm, dict(pipe.unet.config)), unet),
        "vae": (convert_ldm_vae_checkpoint(ldm, dict(pipe.vae.config)), vae),
        "text_encoder": ({k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(ldm).items()},
                         text),
    }
    for name, (read, original) in readers.items():
        if set(read) != set(original):
            raise AssertionError(f"{name}: names differ after the round trip: "
                                 f"{sorted(set(read) ^ set(original))[:5]}")
        wrong = [k for k in original if not torch.equal(read[k].reshape(original[k].shape), original[k])]
        if wrong:
            raise AssertionError(f"{name}: tensors differ after the round trip: {wrong[:5]}")


def save_single_file(pipe, path: Path) -> Path:
    """Write `pipe` to `path` as one LDM-layout .safetensors checkpoint (what A1111 and Civitai share)."""
    save_file(to_ldm_state_dict(pipe), str(path))
    return path
