"""Tiny random SD-shaped components (a few channels) for tests of the loading and pipeline code.

Kept apart from conftest.py: a test module importing from `conftest` would get whichever conftest
(tests/ or tests/reliability/) was imported first.
"""

from __future__ import annotations

import torch

from t2i.settings import EMBEDDED_MODEL_DIR


def tiny_parts(cross_dim: int, **unet_extra):
    """A tiny UNet (cross-attention width `cross_dim`), VAE, scheduler and the embedded tokenizer."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_dim, attention_head_dim=2, norm_num_groups=32, **unet_extra)
    vae = AutoencoderKL(block_out_channels=(32, 32), norm_num_groups=32, latent_channels=4, sample_size=64,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1)
    tokenizer = CLIPTokenizer.from_pretrained(EMBEDDED_MODEL_DIR / "tokenizer")
    return unet, vae, scheduler, tokenizer


def clip_config(tokenizer, **extra):
    """A tiny CLIP text config sized for `tokenizer`."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id, **extra)
