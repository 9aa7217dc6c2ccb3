"""Tiny random components of each model family, laid out like the real models, built offline.

Each builder returns the keyword arguments of its family's diffusers pipeline: a few channels and layers
per module, but the real latent channels, VAE scale (8) and text-encoder types, so 64x64 images run in a
fraction of a second on CPU. Weights come from `torch.manual_seed(seed)` before each module; tokenizers
come from `t2i.models.tiny.tokenizers`.
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL, AutoencoderKLFlux2, AutoencoderKLQwenImage, ChromaTransformer2DModel, EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler, Flux2Transformer2DModel, FluxTransformer2DModel,
    QwenImageTransformer2DModel, SD3Transformer2DModel, UNet2DConditionModel, ZImageTransformer2DModel,
)
from transformers import (
    CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, Mistral3Config, Mistral3ForConditionalGeneration,
    Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen3Config, Qwen3Model, T5Config, T5EncoderModel,
)

from t2i.models.tiny.tokenizers import clip_tokenizer, mistral_tokenizer, qwen_tokenizer, t5_tokenizer

VAE_BLOCKS = (8, 8, 16, 16)  # four levels: the real families' 8x downscale
FLUX2_TEXT_LAYERS = 30  # Flux.2 stacks the hidden states of text layers 10, 20 and 30 by default


def _seeded(seed: int, build):
    torch.manual_seed(seed)
    return build().eval()


def _vae(seed: int, latent_channels: int, scaling_factor: float, shift_factor: float | None = None):
    return _seeded(seed, lambda: AutoencoderKL(
        block_out_channels=VAE_BLOCKS, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, latent_channels=latent_channels,
        norm_num_groups=4, sample_size=64, scaling_factor=scaling_factor, shift_factor=shift_factor,
        use_quant_conv=shift_factor is None, use_post_quant_conv=shift_factor is None))


def _clip(seed: int, tokenizer, hidden: int = 32, projection: bool = False):
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, projection_dim=hidden, max_position_embeddings=77, hidden_act="gelu",
        # the tokenizer's own ids: left at the defaults, transformers falls back to argmax pooling
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return _seeded(seed, lambda: (CLIPTextModelWithProjection if projection else CLIPTextModel)(config))


def _t5(seed: int, tokenizer, d_model: int = 32):
    config = T5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                      relative_attention_num_buckets=8, dropout_rate=0.0, decoder_start_token_id=0,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return _seeded(seed, lambda: T5EncoderModel(config))


def _flow_scheduler(dynamic_shift: bool = True, shift: float = 3.0):
    return FlowMatchEulerDiscreteScheduler(
        shift=shift, use_dynamic_shifting=dynamic_shift, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096)


def _sdxl_style_scheduler():
    return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  steps_offset=1, timestep_spacing="leading")


def _unet(seed: int, cross_attention_dim: int, **extra):
    return _seeded(seed, lambda: UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8, attention_head_dim=4, cross_attention_dim=cross_attention_dim, **extra))


def sd_components(seed: int, variant: str = "") -> dict:
    """Stable Diffusion 1.x/2.x: one CLIP text encoder, a UNet on 4-channel latents."""
    tokenizer = clip_tokenizer()
    return {"unet": _unet(seed, 32), "vae": _vae(seed, 4, 0.18215), "text_encoder": _clip(seed, tokenizer),
            "tokenizer": tokenizer, "scheduler": _sdxl_style_scheduler(), "safety_checker": None,
            "feature_extractor": None, "image_encoder": None, "requires_safety_checker": False}


def sdxl_components(seed: int, variant: str = "") -> dict:
    """SDXL: two CLIP text encoders (the second with a projection), a UNet with size/crop conditioning."""
    tokenizer = clip_tokenizer()
    # text_time embedding: 6 size/crop numbers of `addition_time_embed_dim` each, plus the pooled projection
    unet = _unet(seed, 64, addition_embed_type="text_time", addition_time_embed_dim=8,
                 projection_class_embeddings_input_dim=6 * 8 + 32, transformer_layers_per_block=(1, 1))
    return {"unet": unet, "vae": _vae(seed, 4, 0.13025), "text_encoder": _clip(seed, tokenizer),
            "text_encoder_2": _clip(seed + 1, tokenizer, projection=True), "tokenizer": tokenizer,
            "tokenizer_2": tokenizer, "scheduler": _sdxl_style_scheduler(), "image_encoder": None,
            "feature_extractor": None}


def sd3_components(seed: int, variant: str = "") -> dict:
    """SD3/3.5: two CLIP encoders with projections and T5; an MMDiT on 16-channel latents."""
    clip, t5 = clip_tokenizer(), t5_tokenizer()
    # the two CLIP embeddings (32 + 32 wide) are padded to T5's width, so T5 is 64 wide
    transformer = _seeded(seed, lambda: SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=64,
        pos_embed_max_size=32))
    return {"transformer": transformer, "vae": _vae(seed, 16, 1.5305, 0.0609),
            "text_encoder": _clip(seed, clip, projection=True),
            "text_encoder_2": _clip(seed + 1, clip, projection=True), "text_encoder_3": _t5(seed, t5, 64),
            "tokenizer": clip, "tokenizer_2": clip, "tokenizer_3": t5, "scheduler": _flow_scheduler(False, 3.0),
            "image_encoder": None, "feature_extractor": None}


def flux1_components(seed: int, variant: str = "dev") -> dict:
    """Flux.1: CLIP (pooled) and T5, a double/single-stream transformer on packed 16-channel latents.

    `dev` embeds the distilled guidance and shifts its schedule by resolution; `schnell` does neither.
    """
    if variant not in ("dev", "schnell"):
        raise ValueError(f"Flux.1 variants are 'dev' and 'schnell', not {variant!r}")
    clip, t5 = clip_tokenizer(), t5_tokenizer()
    transformer = _seeded(seed, lambda: FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6),
        guidance_embeds=variant == "dev"))
    return {"transformer": transformer, "vae": _vae(seed, 16, 0.3611, 0.1159), "text_encoder": _clip(seed, clip),
            "text_encoder_2": _t5(seed, t5), "tokenizer": clip, "tokenizer_2": t5,
            "scheduler": _flow_scheduler() if variant == "dev" else _flow_scheduler(False, 1.0),
            "image_encoder": None, "feature_extractor": None}


def chroma_components(seed: int, variant: str = "") -> dict:
    """Chroma: Flux.1's layout without CLIP, modulation from a small approximator network, T5 only."""
    t5 = t5_tokenizer()
    transformer = _seeded(seed, lambda: ChromaTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=(4, 6, 6), approximator_hidden_dim=32,
        approximator_layers=1, approximator_num_channels=16))
    return {"transformer": transformer, "vae": _vae(seed, 16, 0.3611, 0.1159), "text_encoder": _t5(seed, t5),
            "tokenizer": t5, "scheduler": _flow_scheduler(), "image_encoder": None, "feature_extractor": None}


def flux2_components(seed: int, variant: str = "") -> dict:
    """Flux.2 (dev): a Mistral-3 chat encoder (three hidden layers stacked), a Flux.2 VAE with 32 latent channels."""
    tokenizer = mistral_tokenizer()
    hidden = 16
    config = Mistral3Config(
        text_config={"model_type": "mistral", "vocab_size": len(tokenizer), "hidden_size": hidden,
                     "intermediate_size": 37, "num_hidden_layers": FLUX2_TEXT_LAYERS, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "max_position_embeddings": 1024, "sliding_window": None,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={"model_type": "pixtral", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 4,
                       "intermediate_size": 37, "image_size": 30, "patch_size": 6, "num_channels": 3},
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"), vision_feature_layer=-1,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    transformer = _seeded(seed, lambda: Flux2Transformer2DModel(
        patch_size=1, in_channels=128, num_layers=1, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=3 * hidden, timestep_guidance_channels=256,
        axes_dims_rope=(4, 4, 4, 4)))
    vae = _seeded(seed, lambda: AutoencoderKLFlux2(
        block_out_channels=VAE_BLOCKS, layers_per_block=1, latent_channels=32, norm_num_groups=4, sample_size=64))
    text_encoder = _seeded(seed, lambda: Mistral3ForConditionalGeneration(config))
    return {"transformer": transformer, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "scheduler": _flow_scheduler()}


def zimage_components(seed: int, variant: str = "") -> dict:
    """Z-Image: a Qwen3 chat encoder (its second-to-last layer), a single-stream transformer on 16 channels."""
    tokenizer = qwen_tokenizer()
    encoder_config = Qwen3Config(hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                                 num_key_value_heads=2, head_dim=8, vocab_size=len(tokenizer),
                                 max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)

    def transformer():
        model = ZImageTransformer2DModel(
            all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32, n_layers=2, n_refiner_layers=1,
            n_heads=2, n_kv_heads=2, qk_norm=True, cap_feat_dim=16, axes_dims=(8, 4, 4), axes_lens=(256, 32, 32))
        with torch.no_grad():  # created with torch.empty: whatever memory held, so not reproducible
            model.x_pad_token.copy_(torch.randn_like(model.x_pad_token))
            model.cap_pad_token.copy_(torch.randn_like(model.cap_pad_token))
        return model

    return {"transformer": _seeded(seed, transformer), "vae": _vae(seed, 16, 0.3611, 0.1159),
            "text_encoder": _seeded(seed, lambda: Qwen3Model(encoder_config)), "tokenizer": tokenizer,
            "scheduler": _flow_scheduler(False, 3.0)}


def qwenimage_components(seed: int, variant: str = "") -> dict:
    """Qwen-Image: a Qwen2.5-VL encoder, an MMDiT on 16-channel latents of its own (video-style) VAE."""
    tokenizer = qwen_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    encoder_config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "vocab_size": len(tokenizer), "rope_theta": 1000000.0,
                     "bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        vocab_size=len(tokenizer), vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"), image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"))
    transformer = _seeded(seed, lambda: QwenImageTransformer2DModel(
        patch_size=2, in_channels=64, out_channels=16, num_layers=2, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=16, axes_dims_rope=(8, 4, 4)))
    vae = _seeded(seed, lambda: AutoencoderKLQwenImage(
        base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 16, latents_std=[1.0] * 16))
    return {"transformer": transformer, "vae": vae,
            "text_encoder": _seeded(seed, lambda: Qwen2_5_VLForConditionalGeneration(encoder_config)),
            "tokenizer": tokenizer, "scheduler": _flow_scheduler()}
