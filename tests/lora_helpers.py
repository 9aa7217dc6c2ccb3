"""LoRA files for tests: a tint LoRA trained on the embedded model with peft, and a kohya-keyed copy of a file."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler, StableDiffusionPipeline
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from PIL import Image
from safetensors.torch import load_file, save_file

from t2i.embedded.captions import caption
from t2i.embedded.world import random_scene, render
from t2i.settings import EMBEDDED_MODEL_DIR

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]  # kohya files cover all six


def tinted_scenes(tint: tuple[int, int, int], count: int, seed: int) -> tuple[list[Image.Image], list[str]]:
    """Shapes-world scenes half-blended toward `tint`, with their ordinary captions (the tint is the lesson)."""
    rng = random.Random(seed)
    images, captions = [], []
    for _ in range(count):
        scene = random_scene(rng)
        pixels = np.asarray(render(scene), dtype=np.float32)
        images.append(Image.fromarray((0.5 * pixels + 0.5 * np.array(tint, np.float32)).astype("uint8")))
        captions.append(caption(scene, rng))
    return images, captions


def train_tint_lora(out: Path, tint: tuple[int, int, int], steps: int = 80, rank: int = 4, seed: int = 0,
                    text_encoder: bool = False, trigger_words: str = "") -> Path:
    """Train a LoRA that tints the embedded model's images; save it with diffusers (peft) keys.

    80 steps: on the current embedded model 40 gave a red shift of only +12 at weight 1 (80 gave +99).
    """
    torch.manual_seed(seed)
    pipe = StableDiffusionPipeline.from_pretrained(EMBEDDED_MODEL_DIR, safety_checker=None, dtype=torch.float32)
    images, captions = tinted_scenes(tint, 32, seed)
    with torch.no_grad():
        pixels = torch.tensor(np.stack([np.asarray(i) for i in images]), dtype=torch.float32).permute(0, 3, 1, 2)
        latents = pipe.vae.encode(pixels / 127.5 - 1).latent_dist.mean * pipe.vae.config.scaling_factor
    tokens = pipe.tokenizer(captions, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids
    pipe.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=UNET_TARGETS, init_lora_weights="gaussian"))
    trained = [p for p in pipe.unet.parameters() if p.requires_grad]
    if text_encoder:
        pipe.text_encoder.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=TEXT_TARGETS,
                                                 init_lora_weights="gaussian"))
        trained += [p for p in pipe.text_encoder.parameters() if p.requires_grad]
    noise_schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    optimizer = torch.optim.AdamW(trained, lr=3e-3)
    for _ in range(steps):
        pick = torch.randint(0, len(latents), (8,))
        noise = torch.randn_like(latents[pick])
        timesteps = torch.randint(0, noise_schedule.config.num_train_timesteps, (8,))
        noisy = noise_schedule.add_noise(latents[pick], noise, timesteps)
        context = pipe.text_encoder(tokens[pick])[0]
        loss = torch.nn.functional.mse_loss(pipe.unet(noisy, timesteps, context).sample, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    weights = {f"unet.{k}": v for k, v in get_peft_model_state_dict(pipe.unet).items()}
    if text_encoder:
        weights.update({f"text_encoder.{k}": v for k, v in get_peft_model_state_dict(pipe.text_encoder).items()})
    metadata = {"t2i_trigger_words": trigger_words} if trigger_words else None
    save_file({k: v.detach().contiguous() for k, v in weights.items()}, out, metadata=metadata)
    return out


def to_kohya(source: Path, out: Path, tag_frequency: dict | None = None) -> Path:
    """The same LoRA with kohya/A1111 keys (lora_unet_..., lora_te_text_model_..., alpha = rank)."""
    kohya = {}
    for key, value in load_file(source).items():
        component, rest = key.split(".", 1)
        module, part = rest.rsplit(".lora_", 1)
        prefix = "lora_unet_" if component == "unet" else "lora_te_text_model_"  # other tools expect text_model_
        name = prefix + module.replace(".", "_")
        kohya[f"{name}.lora_{'down' if part.startswith('A') else 'up'}.weight"] = value.contiguous()
        if part.startswith("A"):
            kohya[f"{name}.alpha"] = torch.tensor(float(value.shape[0]))
    metadata = {"ss_tag_frequency": json.dumps(tag_frequency)} if tag_frequency else None
    save_file(kohya, out, metadata=metadata)
    return out


def random_lora_weights(model: torch.nn.Module, prefix: str, targets: list[str], rank: int = 2,
                        scale: float = 0.5) -> dict[str, torch.Tensor]:
    """Untrained LoRA weights (peft keys under `prefix`) that fit `model` (which keeps the adapter: a scratch copy)."""
    model.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights=False),
                      adapter_name="scratch")
    weights = {f"{prefix}.{k}": (v * scale).detach().contiguous()
               for k, v in get_peft_model_state_dict(model, adapter_name="scratch").items()}
    return weights
