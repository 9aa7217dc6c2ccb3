"""The Flux.1 (dev and schnell) LoRA training objective: rectified flow matching on packed latents.

The recipe of diffusers' examples/dreambooth/train_dreambooth_lora_flux.py, as plain functions a trainer calls:
1. `encode_latents`: VAE latents with Flux's shift and scaling factor (cache them once per image);
2. `PromptCache`: T5 and pooled CLIP embeddings computed once with no grad, the empty prompt included for
   caption dropout, so the text encoders can leave memory before training;
3. `sample_sigmas`: logit-normal or uniform draws, shifted the way the model's own scheduler shifts its sampling
   schedule: dev by image size (kohya sd-scripts' `--timestep_sampling flux_shift`: the same mu from the packed
   sequence length, 0.5 at 256 tokens to 1.15 at 4096), schnell not at all. `shift=1.0` gives the diffusers
   script's draws, which are unshifted for dev because its scheduler shifts only at inference;
4. `flux_loss`: noisy input (1 - sigma) * x + sigma * noise, target noise - x, the per-sample loss.
Every random draw comes from the caller's CPU `torch.Generator`, so a resumed run with a restored generator state
repeats exactly. `LORA_TARGETS` names the transformer's layers the LoRA adapts (a peft `target_modules` regex).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import FluxPipeline
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

# Attention q/k/v/out of both streams and the feed-forwards of the double blocks; in the single blocks q/k/v, the
# MLP input and the shared output projection (Black Forest Labs' linear1 and linear2). peft full-matches the regex.
LORA_TARGETS = (r"transformer_blocks\.\d+\.(attn\.(to_[qkv]|to_out\.0|add_[qkv]_proj|to_add_out)"
                r"|ff(_context)?\.net\.(0\.proj|2))"
                r"|single_transformer_blocks\.\d+\.(attn\.to_[qkv]|proj_mlp|proj_out)")
TIMESTEP_SAMPLING = ("logit_normal", "uniform")
LOSS_WEIGHTING = ("none", "sigma_sqrt", "cosmap")  # compute_loss_weighting_for_sd3's schemes


@dataclass(frozen=True)
class FlowMatchSettings:
    """How timesteps are drawn and the loss is weighted; defaults follow the diffusers Flux LoRA script."""

    timestep_sampling: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float | None = None  # None: the scheduler's own shift (dev: by image size); 1.0: no shift
    loss_weighting: str = "none"
    guidance: float = 1.0  # the distilled guidance dev is trained at; schnell has no guidance input
    caption_dropout: float = 0.0  # probability that a sample is trained on the empty prompt

    def __post_init__(self):
        if self.timestep_sampling not in TIMESTEP_SAMPLING:
            raise ValueError(f"timestep sampling {self.timestep_sampling!r}; choose one of {TIMESTEP_SAMPLING}")
        if self.loss_weighting not in LOSS_WEIGHTING:
            raise ValueError(f"loss weighting {self.loss_weighting!r}; choose one of {LOSS_WEIGHTING}")
        if self.logit_std <= 0:
            raise ValueError(f"logit std must be positive, not {self.logit_std}")
        if self.shift is not None and self.shift <= 0:
            raise ValueError(f"shift must be positive, not {self.shift}")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ValueError(f"caption dropout is a probability below 1, not {self.caption_dropout}")


def encode_latents(vae, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """VAE latents of images in [-1, 1] (B, 3, H, W), shifted and scaled as the Flux transformer sees them.

    With a generator the latent distribution is sampled (as the diffusers script does each step); without, its mode.
    """
    with torch.no_grad():
        distribution = vae.encode(images.to(device=vae.device, dtype=vae.dtype)).latent_dist
        latents = distribution.sample(generator) if generator is not None else distribution.mode()
    return (latents - vae.config.shift_factor) * vae.config.scaling_factor


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


class PromptCache:
    """T5 sequence and pooled CLIP embeddings of every training prompt and of the empty prompt, computed once."""

    def __init__(self, pipe, prompts, max_sequence_length: int = 512, batch_size: int = 8):
        """Encode `prompts` (and "") with `pipe.encode_prompt` under no grad; the pipeline's encoders are then free."""
        unique = list(dict.fromkeys(["", *prompts]))
        self.sequence: dict[str, torch.Tensor] = {}
        self.pooled: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for start in range(0, len(unique), batch_size):
                chunk = unique[start:start + batch_size]
                sequence, pooled, text_ids = pipe.encode_prompt(chunk, prompt_2=None,
                                                                max_sequence_length=max_sequence_length)
                for index, prompt in enumerate(chunk):
                    self.sequence[prompt] = sequence[index]
                    self.pooled[prompt] = pooled[index]
        self.text_ids = text_ids  # all zeros, one row per T5 token: the same for every prompt

    def embeddings(self, prompts) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stacked (T5 sequence, pooled CLIP, text ids) for `prompts`; a prompt not cached is an error."""
        missing = [prompt for prompt in prompts if prompt not in self.sequence]
        if missing:
            raise KeyError(f"prompts not in the embedding cache: {missing[:3]}")
        return (torch.stack([self.sequence[prompt] for prompt in prompts]),
                torch.stack([self.pooled[prompt] for prompt in prompts]), self.text_ids)


def flux_loss(transformer, scheduler, latents: torch.Tensor, prompts, cache: PromptCache,
              generator: torch.Generator, settings: FlowMatchSettings = FlowMatchSettings()) -> torch.Tensor:
    """Per-sample flow-matching loss (B,) of the transformer on cached latents (B, C, h, w) and their prompts.

    Draws, in this order and all from `generator`: caption dropout, noise, sigmas. The LoRA layers to train
    must already be on `transformer`; `scheduler` is the pipeline's (its shift settings are read).
    """
    batch = latents.shape[0]
    if len(prompts) != batch:
        raise ValueError(f"{len(prompts)} prompts for {batch} latents")
    if settings.caption_dropout > 0:
        dropped = torch.rand(batch, generator=generator) < settings.caption_dropout
        prompts = ["" if drop else prompt for prompt, drop in zip(prompts, dropped.tolist())]
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents.device, latents.dtype)
    image_seq_len = (latents.shape[2] // 2) * (latents.shape[3] // 2)
    sigmas = sample_sigmas(scheduler, settings, batch, image_seq_len, generator).to(latents.device)

    packed_input, image_ids = pack_latents(noisy_input(latents, noise, sigmas))
    sequence, pooled, text_ids = cache.embeddings(prompts)
    device, dtype = transformer.device, transformer.dtype  # e.g. a bf16 transformer on fp32 latents
    prediction = transformer(
        hidden_states=packed_input.to(device, dtype), timestep=sigmas.to(device, dtype),  # scaled by 1000 inside
        guidance=guidance_input(transformer, batch, settings.guidance), pooled_projections=pooled.to(device, dtype),
        encoder_hidden_states=sequence.to(device, dtype), txt_ids=text_ids.to(device, dtype),
        img_ids=image_ids.to(device, dtype), return_dict=False)[0]
    # packing only reorders values, so the packed target gives the same per-sample mean as unpacking the prediction
    target, _ = pack_latents(flow_target(latents, noise))
    weighting = compute_loss_weighting_for_sd3(settings.loss_weighting, sigmas=sigmas.float()).reshape(batch, 1, 1)
    return (weighting.to(device) * (prediction.float() - target.to(device).float()) ** 2).reshape(batch, -1).mean(dim=1)
