"""The Flux.1 (dev and schnell) LoRA training objective: rectified flow matching on packed latents.

The pieces of diffusers' examples/dreambooth/train_dreambooth_lora_flux.py that t2i/train/family_flux.py builds its
`noisy_batch` and `predict` on (latents and prompt embeddings are encoded there, once per run):
1. `sample_sigmas`: logit-normal or uniform draws, shifted the way the model's own scheduler shifts its sampling
   schedule: dev by image size (kohya sd-scripts' `--timestep_sampling flux_shift`: the same mu from the packed
   sequence length, 0.5 at 256 tokens to 1.15 at 4096), schnell not at all. `shift=1.0` gives the diffusers
   script's draws, which are unshifted for dev because its scheduler shifts only at inference;
2. `noisy_input` and `flow_target`: the noisy input (1 - sigma) * x + sigma * noise and the target noise - x;
3. `pack_latents`: the transformer's 2x2 patch sequence and its position ids;
4. `guidance_input`: the distilled guidance value dev embeds (schnell has no such input).
Every random draw comes from the caller's CPU `torch.Generator`, so a resumed run with a restored generator state
repeats exactly. `LORA_TARGETS` names the transformer's layers the LoRA adapts (a peft `target_modules` regex).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import FluxPipeline
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from diffusers.training_utils import compute_density_for_timestep_sampling

# Attention q/k/v/out of both streams and the feed-forwards of the double blocks; in the single blocks q/k/v, the
# MLP input and the shared output projection (Black Forest Labs' linear1 and linear2). peft full-matches the regex.
LORA_TARGETS = (r"transformer_blocks\.\d+\.(attn\.(to_[qkv]|to_out\.0|add_[qkv]_proj|to_add_out)"
                r"|ff(_context)?\.net\.(0\.proj|2))"
                r"|single_transformer_blocks\.\d+\.(attn\.to_[qkv]|proj_mlp|proj_out)")
TIMESTEP_SAMPLING = ("logit_normal", "uniform")


@dataclass(frozen=True)
class FlowMatchSettings:
    """How sigmas are drawn and the guidance dev trains at; defaults follow the diffusers Flux LoRA script."""

    timestep_sampling: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float | None = None  # None: the scheduler's own shift (dev: by image size); 1.0: no shift
    guidance: float = 1.0  # the distilled guidance dev is trained at; schnell has no guidance input

    def __post_init__(self):
        if self.timestep_sampling not in TIMESTEP_SAMPLING:
            raise ValueError(f"timestep sampling {self.timestep_sampling!r}; choose one of {TIMESTEP_SAMPLING}")
        if self.logit_std <= 0:
            raise ValueError(f"logit std must be positive, not {self.logit_std}")
        if self.shift is not None and self.shift <= 0:
            raise ValueError(f"shift must be positive, not {self.shift}")


def pack_latents(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, h, w) latents as the transformer's 2x2 patch sequence (B, h*w/4, 4C), and the patches' position ids."""
    batch, channels, height, width = latents.shape
    if height % 2 or width % 2:
        raise ValueError(f"Flux packs 2x2 latent patches; latents of {height}x{width} are not even")
    packed = FluxPipeline._pack_latents(latents, batch, channels, height, width)
    image_ids = FluxPipeline._prepare_latent_image_ids(batch, height // 2, width // 2, latents.device, latents.dtype)
    return packed, image_ids


def noisy_input(latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """The flow-matching point between clean latents (sigma 0) and pure noise (sigma 1), one sigma per sample."""
    sigmas = sigmas.reshape(-1, *([1] * (latents.ndim - 1))).to(latents.dtype)
    return (1.0 - sigmas) * latents + sigmas * noise


def flow_target(latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """What the transformer learns to predict: the velocity from the clean latents to the noise."""
    return noise - latents


def sample_sigmas(scheduler, settings: FlowMatchSettings, batch_size: int, image_seq_len: int,
                  generator: torch.Generator) -> torch.Tensor:
    """One sigma in (0, 1) per sample: logit-normal or uniform, then shifted towards noise like the sampler."""
    u = compute_density_for_timestep_sampling(
        "logit_normal" if settings.timestep_sampling == "logit_normal" else "none", batch_size,
        logit_mean=settings.logit_mean, logit_std=settings.logit_std, generator=generator)
    config = scheduler.config
    if settings.shift is None and config.use_dynamic_shifting:
        # dev shifts its schedule by image size at inference; train where it samples
        mu = calculate_shift(image_seq_len, config.base_image_seq_len, config.max_image_seq_len,
                             config.base_shift, config.max_shift)
        return scheduler.time_shift(mu, 1.0, u)
    shift = config.shift if settings.shift is None else settings.shift
    return shift * u / (1 + (shift - 1) * u)


def guidance_input(transformer, batch_size: int, guidance: float = 1.0) -> torch.Tensor | None:
    """The guidance value dev's transformer embeds, one per sample; None for schnell, which has no such input."""
    if not transformer.config.guidance_embeds:
        return None
    return torch.full((batch_size,), float(guidance), device=transformer.device, dtype=torch.float32)

