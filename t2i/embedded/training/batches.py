"""What the training stages share (train.py and refine.py): batches, the reconstruction loss, the training set
and captions, the denoiser's setup and its optimizer step. Every batch comes from the RNG its caller seeds."""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from diffusers.image_processor import VaeImageProcessor
from safetensors.torch import load_file

from t2i.embedded.training.architecture import make_text_encoder, make_train_scheduler, make_unet
from t2i.embedded.captions import caption, is_held_out
from t2i.embedded.training.tokenizer_build import EXTRA_WORDS, MAX_LENGTH
from t2i.embedded.world import COLOURS, HELD_OUT_COLOURS, busy_image, random_scene, render, spread_apart

FILLERS = EXTRA_WORDS.split()


PIXELS = VaeImageProcessor(do_resize=False)  # images arrive at the model's size; resizing is the caller's job


def images_to_tensor(images) -> torch.Tensor:
    """PIL images -> float tensor in [-1, 1], NCHW."""
    # contiguous, as before: the same memory layout picks the same conv kernels, so latents stay bit-identical
    return PIXELS.preprocess(list(images)).contiguous()


def autoencoder_batch(rng: random.Random, n: int, device: torch.device) -> torch.Tensor:
    """Half scenes like the ones the model will draw, half busier ones for more edges per image."""
    colours = (*COLOURS, *HELD_OUT_COLOURS)
    return images_to_tensor(render(random_scene(rng, rng.random() < 0.3, colours, ("solid", "outlined")))
                            if k % 2 else busy_image(rng, ("solid", "outlined")) for k in range(n)).to(device)


def reconstruction_loss(recon: torch.Tensor, x: torch.Tensor, edge_weight: float = 0.0) -> torch.Tensor:
    """L1 + L2, with object pixels weighted 10x (the flat background would otherwise swamp them) and pixels
    whose 3x3 neighbourhood holds another colour weighted `edge_weight` more (a shape is told by its edges)."""
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], dim=2)
    background = border.median(dim=2).values[:, :, None, None]
    weight = 1.0 + 9.0 * ((x - background).abs().amax(dim=1, keepdim=True) > 0.1).float()
    if edge_weight:
        local_range = F.max_pool2d(x, 3, 1, 1) + F.max_pool2d(-x, 3, 1, 1)
        weight = weight + edge_weight * (local_range.amax(dim=1, keepdim=True) > 0.1).float()
    error = (recon - x).abs() + (recon - x).pow(2)
    return (weight * error).sum() / (weight.sum() * x.shape[1])


def training_scenes(cfg) -> list:
    """The fixed training set: base colours, solid style, pairs at the ends of their row or column, held-out
    combinations left out."""
    rng = random.Random(cfg.seed)
    scenes = []
    while len(scenes) < cfg.n_scenes:
        scene = spread_apart(random_scene(rng, two_objects=rng.random() < cfg.pair_fraction))
        if not any(is_held_out(o) for o in scene.objects):
            scenes.append(scene)
    return scenes


def training_caption(scene, rng: random.Random, cfg) -> str:
    if rng.random() < cfg.uncond_fraction:
        return ""
    return described_caption(scene, rng)


def described_caption(scene, rng: random.Random) -> str:
    """A training caption of `scene`, with unrelated words added to some."""
    text = caption(scene, rng)
    if rng.random() < 0.2:  # irrelevant words, so pasted prompts with extra words still work
        extra = " ".join(rng.sample(FILLERS, rng.randint(1, 3)))
        text = f"{extra}, {text}" if rng.random() < 0.5 else f"{text}, {extra}"
    return text


def load_denoiser_setup(cfg, device: torch.device) -> dict:
    """Tokenizer, cached latents, training scenes, noise schedule, a fresh UNet and the frozen text encoder."""
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(cfg.work / "tokenizer")
    data = load_file(str(cfg.work / "latents.safetensors"))
    latents = data["latents"] * data["scaling_factor"]
    scenes = training_scenes(cfg)
    torch.manual_seed(cfg.seed)
    unet = make_unet().to(device)
    text_encoder = load_text_encoder(cfg, tokenizer).to(device)
    return dict(tokenizer=tokenizer, latents=latents, scenes=scenes, unet=unet, text_encoder=text_encoder,
                scheduler=make_train_scheduler(), device=device)


def load_text_encoder(cfg, tokenizer) -> torch.nn.Module:
    """The pretrained text encoder (stage 4), frozen. Trained on along with the UNet it let the relation words
    drift together: "left of" and "right of" ended 0.6 apart against 8.6 after pretraining (per-token distance
    of the words after them), and the UNet placed pairs in either order."""
    text_encoder = make_text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    text_encoder.load_state_dict(load_file(str(cfg.work / "text_encoder" / "model.safetensors")))
    return text_encoder.requires_grad_(False).eval()


def denoiser_batch(setup: dict, cfg, rng: random.Random, gen: torch.Generator):
    """One training batch: (noisy latents, timesteps, caption token ids, the noise added)."""
    scheduler, device = setup["scheduler"], setup["device"]
    idx = rng.sample(range(len(setup["scenes"])), cfg.batch)
    ids = setup["tokenizer"]([training_caption(setup["scenes"][i], rng, cfg) for i in idx], padding="max_length",
                             max_length=MAX_LENGTH, truncation=True, return_tensors="pt").input_ids.to(device)
    x0 = setup["latents"][idx].to(device)
    noise = torch.randn(x0.shape, generator=gen) + cfg.offset_noise * torch.randn(
        x0.shape[0], x0.shape[1], 1, 1, generator=gen)
    noise = noise.to(device)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (cfg.batch,), generator=gen).to(device)
    return scheduler.add_noise(x0, noise, t), t, ids, noise


def denoiser_update(loss: torch.Tensor, opt, params: list, ema, bar, where: str) -> None:
    """One optimizer step (gradients clipped to norm 1) and EMA update; stop on a non-finite loss."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    ema.step(params)
    bar.set_postfix(loss=f"{loss.item():.4f}")
    if not torch.isfinite(loss):
        raise SystemExit(f"error: loss became {loss.item()} at {where}")


