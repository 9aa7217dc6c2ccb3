"""Tiny random LoRAs for the tiny models, in diffusers' keys or in kohya (sd-scripts) keys.

Diffusers style: `<unet|transformer>.<module>.lora_A.weight` / `.lora_B.weight`, as `save_lora_weights` writes.
Kohya style: `lora_unet_<module with _>.lora_down.weight` / `.lora_up.weight` / `.alpha`, where <module> is
diffusers' name for SD, SDXL, Z-Image and Qwen-Image and Black Forest Labs' name for Flux.1, Chroma and Flux.2
(`double_blocks_0_img_attn_qkv`: one LoRA over the fused q/k/v). Kohya Flux LoRAs leave out
`single_blocks_N_linear1`: diffusers splits it with Flux.1's real widths. diffusers reads no kohya LoRA for SD3.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from t2i.models.tiny.pipelines import build_pipeline

RANK = 4  # not a multiple of 3: diffusers reads a fused-qkv kohya LoRA of rank 3n as "sparse" and splits it
ATTENTION = r"(to_q|to_k|to_v|to_out\.0)"
# the Linear layers each family's LoRA adapts, by diffusers name
TARGETS = {
    "sd": rf".*\.attn[12]\.{ATTENTION}", "sdxl": rf".*\.attn[12]\.{ATTENTION}",
    "sd3": rf"transformer_blocks\.\d+\.attn\.{ATTENTION}",
    "flux1": rf"transformer_blocks\.\d+\.attn\.{ATTENTION}|single_transformer_blocks\.\d+\.proj_out",
    "chroma": rf"transformer_blocks\.\d+\.attn\.{ATTENTION}|single_transformer_blocks\.\d+\.proj_out",
    "flux2": rf"transformer_blocks\.\d+\.attn\.{ATTENTION}|single_transformer_blocks\.\d+\.attn\.to_out",
    "zimage": rf"layers\.\d+\.attention\.{ATTENTION}",
    "qwenimage": rf"transformer_blocks\.\d+\.attn\.{ATTENTION}",
}
# diffusers name -> Black Forest Labs' name (q/k/v share the fused one)
BFL_NAMES = [
    (r"transformer_blocks\.(\d+)\.attn\.to_[qkv]", r"double_blocks_\1_img_attn_qkv"),
    (r"transformer_blocks\.(\d+)\.attn\.to_out\.0", r"double_blocks_\1_img_attn_proj"),
    (r"single_transformer_blocks\.(\d+)\.(proj_out|attn\.to_out)", r"single_blocks_\1_linear2"),
]
KOHYA_BFL = ("flux1", "chroma", "flux2")


def _denoiser(pipe) -> tuple[str, torch.nn.Module]:
    return ("unet", pipe.unet) if hasattr(pipe, "unet") else ("transformer", pipe.transformer)


def _target_layers(family: str, model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    return {name: module for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and re.fullmatch(TARGETS[family], name)}


def _kohya_modules(family: str, layers: dict[str, torch.nn.Linear]) -> dict[str, tuple[int, int]]:
    """kohya module name -> (out, in) features; fused q/k/v stack their outputs."""
    modules: dict[str, tuple[int, int]] = {}
    for name, layer in layers.items():
        if family not in KOHYA_BFL:
            modules["lora_unet_" + name.replace(".", "_")] = (layer.out_features, layer.in_features)
            continue
        if name.startswith("single_transformer_blocks") and ".attn.to_" in name and "to_out" not in name:
            continue
        for pattern, template in BFL_NAMES:
            if match := re.fullmatch(pattern, name):
                kohya = "lora_unet_" + match.expand(template)
                out_features = modules.get(kohya, (0, 0))[0] + layer.out_features
                modules[kohya] = (out_features, layer.in_features)
                break
    return modules


def save_tiny_lora(family: str, path: Path, style: str = "diffusers", seed: int = 0, model_seed: int = 0) -> Path:
    """Write a random rank-4 LoRA for the tiny `family` model (`build_pipeline(family, seed=model_seed)`)."""
    if style not in ("diffusers", "kohya"):
        raise ValueError(f"LoRA style {style!r}; choose 'diffusers' or 'kohya'")
    if style == "kohya" and family == "sd3":
        raise ValueError("diffusers 0.42.1 reads no kohya-style LoRA for SD3; write style='diffusers'")
    prefix, model = _denoiser(build_pipeline(family, seed=model_seed))
    layers = _target_layers(family, model)
    generator = torch.Generator().manual_seed(seed)

    def random(*shape):
        return torch.randn(*shape, generator=generator) * 0.1

    tensors = {}
    if style == "diffusers":
        for name, layer in layers.items():
            tensors[f"{prefix}.{name}.lora_A.weight"] = random(RANK, layer.in_features)
            tensors[f"{prefix}.{name}.lora_B.weight"] = random(layer.out_features, RANK)
    else:
        for name, (out_features, in_features) in _kohya_modules(family, layers).items():
            tensors[f"{name}.lora_down.weight"] = random(RANK, in_features)
            tensors[f"{name}.lora_up.weight"] = random(out_features, RANK)
            tensors[f"{name}.alpha"] = torch.tensor(float(RANK))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path
