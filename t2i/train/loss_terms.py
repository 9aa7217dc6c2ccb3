"""The parts of a diffusion training loss that kohya and OneTrainer users turn on: noise offset, min-SNR-gamma
weighting, biased timestep sampling and a per-image mask. Each takes tensors and returns tensors; the trainer
(t2i/train/lora_trainer.py) puts them together."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.training_utils import compute_snr


def add_noise_offset(noise: torch.Tensor, offset: float, generator: torch.Generator) -> torch.Tensor:
    """`noise` plus `offset` times one normal draw per sample and channel (Guttenberg's noise offset): the model
    learns to move whole channels, so images can be darker or brighter overall. `offset` 0 returns `noise`."""
    if not offset:
        return noise
    shift = torch.randn(noise.shape[:2] + (1,) * (noise.ndim - 2), generator=generator)
    return noise + offset * shift.to(noise.device, noise.dtype)


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample loss weights of min-SNR-gamma (Hang et al. 2023): min(SNR, gamma) / SNR for epsilon prediction,
    min(SNR, gamma) / (SNR + 1) for v-prediction; ones when `gamma` is 0. `scheduler` is a DDPM-style scheduler
    (it has alphas_cumprod)."""
    if not gamma:
        return torch.ones(len(timesteps), device=timesteps.device)
    snr = compute_snr(scheduler, timesteps)
    clipped = torch.clamp(snr, max=gamma)
    prediction = scheduler.config.prediction_type
    if prediction == "epsilon":
        return clipped / snr
    if prediction == "v_prediction":
        return clipped / (snr + 1)
    raise ValueError(f"min-SNR weighting is defined for epsilon and v-prediction, not {prediction!r}")


def timestep_weights(config, num_train_timesteps: int) -> torch.Tensor:
    """How often each timestep is drawn (relative): 1 everywhere, and `timestep_bias_multiplier` on the favoured
    `timestep_bias_portion` of them (the smallest timesteps for "low_noise", the largest for "high_noise")."""
    weights = torch.ones(num_train_timesteps)
    favoured = max(1, round(num_train_timesteps * config.timestep_bias_portion))
    if config.timestep_bias == "low_noise":
        weights[:favoured] *= config.timestep_bias_multiplier
    elif config.timestep_bias == "high_noise":
        weights[-favoured:] *= config.timestep_bias_multiplier
    return weights


def sample_timesteps(config, num_train_timesteps: int, batch: int, generator: torch.Generator) -> torch.LongTensor:
    """One training timestep per sample: uniform (the same draw as before the option existed, so runs repeat), or
    biased as `config.timestep_bias` says."""
    if config.timestep_bias == "none":
        return torch.randint(0, num_train_timesteps, (batch,), generator=generator)
    return torch.multinomial(timestep_weights(config, num_train_timesteps), batch, replacement=True,
                             generator=generator)


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error per sample, in float32. With `mask` (batch x 1 x H x W at image size, 1 = train on,
    0 = ignore), the mask is area-resized to the latent size and the error is averaged over the kept pixels only,
    so a small masked subject weighs as much as a whole image."""
    error = (pred.float() - target.float()) ** 2
    if mask is None:
        return error.mean(dim=tuple(range(1, error.ndim)))
    if mask.ndim == 3:
        mask = mask[:, None]
    mask = F.interpolate(mask.float().to(error.device), size=error.shape[-2:], mode="area")
    dims = tuple(range(1, error.ndim))
    kept = (error * mask).sum(dim=dims)
    return kept / (mask.sum(dim=dims) * error.shape[1]).clamp(min=1e-6)
