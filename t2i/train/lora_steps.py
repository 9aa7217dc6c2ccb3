"""The LoRA trainer's set-up and update steps: the LoRA layers on the trained parts of a pipeline, and one optimizer
update. The trainer (t2i/train/lora_trainer.py) and the real-architecture bench (bench/train_real_arch.py) both call
these, so the bench times the trainer's own code."""

from __future__ import annotations

import torch
from peft import LoraConfig

from t2i.train.config import TrainingConfig
from t2i.train.family_training import FamilyTraining

GRADIENT_CLIP = 1.0  # the gradient norm every update is clipped to (as diffusers' training scripts default)


def trained_components(family: FamilyTraining, config: TrainingConfig) -> tuple[str, ...]:
    """The pipeline attributes that get LoRA layers: the denoiser, and the text encoders when they train."""
    return (family.denoiser, *(family.text_encoders if config.train_text_encoder else ()))


def add_lora_layers(pipe, family: FamilyTraining, config: TrainingConfig) -> list[dict]:
    """Add the family's LoRA layers to the trained components (seeded by `config.seed`, so a fresh start is
    reproducible); return the optimizer's parameter groups, one per component with its learning rate."""
    # the denoiser first, then the text encoders: the order SD runs always drew their initial weights in
    torch.manual_seed(config.seed)
    groups = []
    for component in trained_components(family, config):
        module = getattr(pipe, component)
        module.add_adapter(LoraConfig(r=config.rank, lora_alpha=config.alpha, init_lora_weights="gaussian",
                                      target_modules=family.lora_targets(component, config)))
        groups.append({"params": [p for p in module.parameters() if p.requires_grad],
                       "lr": config.learning_rate if component == family.denoiser else config.text_encoder_lr})
    return groups


def optimizer_update(accelerator, loss: torch.Tensor, trained: list[torch.Tensor], optimizer, lr_schedule,
                     ema=None) -> None:
    """Backward one micro-batch's loss; at the end of an accumulation (accelerate's `sync_gradients`) clip the
    gradients, and step the schedule and the EMA; the optimizer steps every micro-batch (accelerate's prepared
    optimizer skips the steps inside an accumulation)."""
    accelerator.backward(loss)
    if accelerator.sync_gradients:
        accelerator.clip_grad_norm_(trained, GRADIENT_CLIP)
    optimizer.step()
    optimizer.zero_grad()
    if accelerator.sync_gradients:  # once per optimizer update, not per micro-batch
        lr_schedule.step()
        if ema is not None:
            ema.update()
