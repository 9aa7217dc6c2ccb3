"""Sizes of the embedded model's standard diffusers/transformers components."""

from __future__ import annotations

from diffusers import AutoencoderKL, DDPMScheduler, EulerDiscreteScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from t2i.embedded.world import IMAGE_SIZE

LATENT_SIZE = IMAGE_SIZE // 4  # three VAE blocks: a scale factor of 4
TEXT_WIDTH = 128

# SD 1.x's noise schedule, so every diffusers scheduler and sampler applies as it does to SD 1.5
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                prediction_type="epsilon", steps_offset=1, timestep_spacing="leading")


def make_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=IMAGE_SIZE,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16, mid_block_add_attention=False,
    )


def make_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(64, 64, 128), norm_num_groups=16,
        # cross-attention at 8x8 and 4x4 only: conditioning there is enough for this world, and cheap
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH, attention_head_dim=4,
    )


def make_text_encoder(vocab_size: int, bos_id: int, eos_id: int) -> CLIPTextModel:
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=bos_id, eos_token_id=eos_id,
        pad_token_id=eos_id, projection_dim=TEXT_WIDTH,
    ))


def make_train_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**SCHEDULE, clip_sample=False)


def make_sample_scheduler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(**SCHEDULE)
