"""How SDXL-family models (SDXL, Pony, Illustrious, NoobAI) train a LoRA: two CLIP text encoders, whose penultimate
hidden states are joined and whose second gives the pooled embedding, and the UNet's size/crop time ids.

As diffusers' train_dreambooth_lora_sdxl.py does it: the time ids are (original height, original width, crop top,
crop left, target height, target width) per image, the pooled embedding is text_encoder_2's projection.
"""

from __future__ import annotations

import torch

from t2i.train.family_training import FamilyRefused, StableDiffusionTraining, _tokens
from t2i.train.kohya_keys import sgm_unet_path, to_kohya

# SDXL learnt little from images under 256 px (its size conditioning starts there; kohya's bucket minimum is 256);
# the rule scales with the model's native size, so a small model (e.g. a tiny test model) is held to its own scale
SMALLEST_FRACTION = 256 / 1024


class SDXLTraining(StableDiffusionTraining):
    """SDXL: the SD loop plus the second text encoder, pooled embeddings and size/crop time ids."""

    family = "sdxl"
    text_encoders = ("text_encoder", "text_encoder_2")
    pipeline_class = "StableDiffusionXLPipeline"

    def check(self, pipe, config, native_size, image_sizes) -> None:
        smallest = round(native_size * SMALLEST_FRACTION)
        small = [size for size in image_sizes if min(size) < smallest]
        if small:
            width, height = small[0]
            raise FamilyRefused(
                f"SDXL training needs images at least {smallest} px on their short side (a quarter of the model's "
                f"native {native_size} px); {len(small)} image(s) are smaller, e.g. {width}x{height}: use larger "
                f"images")
        if config.resolution and config.resolution < smallest:
            raise FamilyRefused(f"SDXL training needs a resolution of at least {smallest} px (a quarter of the "
                                f"model's native {native_size} px); got {config.resolution}")

    def image_conditions(self, originals, crops, size) -> dict[str, torch.Tensor]:
        ids = [(height, width, top, left, size[1], size[0])
               for (width, height), (left, top) in zip(originals, crops)]
        return {"time_ids": torch.tensor(ids, dtype=torch.float32)}

    def encode_prompts(self, pipe, encoders, prompts) -> dict[str, torch.Tensor]:
        hidden, pooled = [], None
        for name, tokenizer in (("text_encoder", pipe.tokenizer), ("text_encoder_2", pipe.tokenizer_2)):
            output = encoders[name](_tokens(tokenizer, prompts).to(pipe.device), output_hidden_states=True)
            hidden.append(output.hidden_states[-2])  # SDXL conditions on the penultimate layer of both
            pooled = output[0]  # the last encoder's: text_encoder_2's projected pooled embedding
        return {"prompt_embeds": torch.cat(hidden, dim=-1), "pooled": pooled}

    def predict(self, denoiser, pipe, batch, embeds, conditions) -> torch.Tensor:
        extra = {"text_embeds": embeds["pooled"],
                 "time_ids": conditions["time_ids"].to(batch.model_input.device, embeds["pooled"].dtype)}
        return denoiser(batch.model_input, batch.timesteps, embeds["prompt_embeds"],
                        added_cond_kwargs=extra).sample

    def kohya_weights(self, pipe, weights, alpha) -> dict[str, torch.Tensor]:
        return to_kohya(weights, alpha, {"lora_te1_": "lora_te1_", "lora_te2_": "lora_te2_"},
                        lambda path: sgm_unet_path(path, pipe.unet.config))
