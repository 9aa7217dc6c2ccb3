"""The optimizer and learning-rate schedule a training run asks for (TrainingConfig.optimizer, .lr_scheduler).

Where each optimizer runs (bitsandbytes 0.50.2, prodigyopt 1.1.2, checked on this machine): AdamW and Prodigy are
plain torch and run on any device; bitsandbytes' 8-bit AdamW has kernels for CUDA, XPU and CPU (its CPU kernel
keeps the state in uint8 and stepped within 1e-3 of torch's AdamW over 30 steps), but none for Apple's MPS.
"""

from __future__ import annotations

import torch
from diffusers.optimization import get_scheduler

from t2i.request import RequestError

# device types with a kernel for bitsandbytes' blockwise 8-bit optimizer update (its backends/*/ops.py)
ADAMW8BIT_DEVICES = ("cpu", "cuda", "xpu")
# Prodigy as kohya users run it: decoupled weight decay, bias correction (recommended for diffusion); with warmup
# it safeguards its step-size estimate against the ramp
PRODIGY_OPTIONS = {"decouple": True, "use_bias_correction": True, "weight_decay": 0.01}


def build_optimizer(param_groups: list[dict], config, device: str | torch.device) -> torch.optim.Optimizer:
    """The optimizer named by `config.optimizer` over `param_groups` (each with its "params" and "lr"); a
    RequestError before any training if it cannot run on `device`."""
    device_type = torch.device(device).type
    if config.optimizer == "adamw":
        return torch.optim.AdamW(param_groups)
    if config.optimizer == "adamw8bit":
        if device_type not in ADAMW8BIT_DEVICES:
            raise RequestError(f"8-bit AdamW has no kernel for {device_type} (bitsandbytes runs it on CUDA GPUs and "
                               f"CPUs); use adamw on {device_type}")
        try:
            import bitsandbytes
        except ImportError as exc:
            raise RequestError("8-bit AdamW needs bitsandbytes, which t2i does not install by default "
                               "(pip install -r requirements-gpu.txt); or use adamw") from exc
        return bitsandbytes.optim.AdamW8bit(param_groups)
    if config.optimizer == "prodigy":
        try:
            from prodigyopt import Prodigy
        except ImportError as exc:
            raise RequestError("Prodigy needs prodigyopt (pip install prodigyopt==1.1.2); or use adamw") from exc
        return Prodigy(param_groups, safeguard_warmup=config.lr_warmup_steps > 0, **PRODIGY_OPTIONS)
    raise RequestError(f"unknown optimizer {config.optimizer!r}")


def build_lr_scheduler(optimizer: torch.optim.Optimizer, config, total_steps: int):
    """diffusers' learning-rate schedule named by `config.lr_scheduler`, with `config.lr_warmup_steps` of warmup,
    to be stepped once per optimizer update. Do not pass it through accelerator.prepare without scaling: accelerate
    steps a prepared scheduler once per process at each call."""
    return get_scheduler(config.lr_scheduler, optimizer, num_warmup_steps=config.lr_warmup_steps,
                         num_training_steps=total_steps, num_cycles=config.lr_cycles)
