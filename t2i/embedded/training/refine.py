"""Two refinement stages of the embedded model's training that keep the latent space as it is.

- `refine_decoder`: the VAE decoder alone, encoder frozen, so the cached latents and the denoiser stay valid.
  Sharper small shapes (the joint VAE stage leaves 11-pixel stars and rings blurred).
- `refine_low_noise`: the denoiser on the plain epsilon loss (min-SNR-5 gave the lowest noise levels almost
  no weight), with some low-noise captions swapped for another image's, so that img2img at low strength
  keeps the init image's layout under a prompt that contradicts it (see `_mismatch_some_captions`).

Both resume from their own checkpoint folders and draw every batch from an RNG seeded by (seed, step).
"""

from __future__ import annotations

import math
import random
import sys

import torch
from tqdm import tqdm

from t2i.embedded.training.checkpoints import load_checkpoint, save_checkpoint
from t2i.embedded.training.batches import (autoencoder_batch, denoiser_batch, denoiser_update, load_denoiser_setup,
                               reconstruction_loss)

DECODER_SEED_OFFSET = 7_000_003
LOW_NOISE_SEED_OFFSET = 9_000_011
LOW_NOISE_EMA_DECAY = 0.998  # a short stage: the long run's 0.9995 would keep mostly the weights it started from
MISMATCH_BELOW_T = 500  # below this timestep the noisy latent shows the layout plainly...
MISMATCH_FRACTION = 0.3  # ...and this share of captions there belong to another image of the batch


def _mismatch_some_captions(ids: torch.Tensor, t: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """Give some low-noise samples the caption of another batch item.

    In this world a caption determines the whole picture, so the base model learned to follow the caption at
    every noise level: with a prompt that contradicts the init image (img2img at low strength) it redraws
    the scene from the prompt, or, with guidance amplifying a huge epsilon, produces noise. Seeing captions
    that disagree with a plainly visible latent teaches it that at low noise the image is the evidence.
    """
    rows = [i for i in range(len(ids)) if int(t[i]) < MISMATCH_BELOW_T and rng.random() < MISMATCH_FRACTION]
    ids = ids.clone()
    for i in rows:
        ids[i] = ids[(i + 1) % len(ids)]  # batch items are independent random scenes
    return ids


def refine_decoder(cfg, device: torch.device) -> None:
    """Fine-tune the decoder (and post-quant conv) on fresh renders; save `work/vae_refined`."""
    from diffusers import AutoencoderKL

    done = cfg.work / "vae_refined" / "diffusion_pytorch_model.safetensors"
    if done.exists():
        return
    vae = AutoencoderKL.from_pretrained(cfg.work / "vae").to(device)
    frozen = [*vae.encoder.parameters(), *vae.quant_conv.parameters()]
    for p in frozen:
        p.requires_grad_(False)
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.decoder_lr, weight_decay=0.0)
    start = load_checkpoint(cfg.work / "decoder_refine_ckpt", {"vae": vae}, opt)
    bar = tqdm(range(start, cfg.decoder_steps), initial=start, total=cfg.decoder_steps, desc="decoder",
               file=sys.stdout)
    for step in bar:
        x = autoencoder_batch(random.Random(cfg.seed * 1_000_003 + DECODER_SEED_OFFSET + step), cfg.vae_batch,
                               device)
        for group in opt.param_groups:  # cosine decay to zero
            group["lr"] = cfg.decoder_lr * 0.5 * (1 + math.cos(math.pi * step / cfg.decoder_steps))
        with torch.no_grad():
            latents = vae.encode(x).latent_dist.mode()
        loss = reconstruction_loss(vae.decode(latents).sample, x, cfg.vae_edge_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % cfg.checkpoint_every == 0:
            save_checkpoint(cfg.work / "decoder_refine_ckpt", {"vae": vae}, opt, step + 1)
    vae.save_pretrained(cfg.work / "vae_refined")


def refine_low_noise(cfg, device: torch.device) -> None:
    """Continue from the denoiser's EMA weights on the plain epsilon loss, with a shorter EMA."""
    from diffusers.training_utils import EMAModel

    setup = load_denoiser_setup(cfg, device)
    unet, text_encoder = setup["unet"], setup["text_encoder"]
    params = list(unet.parameters())
    models = {"unet": unet}
    opt = torch.optim.AdamW(params, lr=cfg.low_noise_lr, weight_decay=1e-2)
    folder = cfg.work / "low_noise_ckpt"
    if (folder / "step.json").exists() or (folder.with_name(folder.name + ".old") / "step.json").exists():
        ema = EMAModel(params, decay=LOW_NOISE_EMA_DECAY)
        start = load_checkpoint(folder, models, opt, ema)
    else:  # first start: the long run's averaged weights
        long_run = EMAModel(params)
        load_checkpoint(cfg.work / "denoiser_ckpt", models, None, long_run)
        long_run.copy_to(params)
        ema = EMAModel(params, decay=LOW_NOISE_EMA_DECAY)
        start = 0
    bar = tqdm(range(start, cfg.low_noise_steps), initial=start, total=cfg.low_noise_steps, desc="low noise",
               file=sys.stdout)
    for step in bar:
        batch_seed = cfg.seed * 1_000_003 + LOW_NOISE_SEED_OFFSET + step
        rng = random.Random(batch_seed)
        noisy, t, ids, noise = denoiser_batch(setup, cfg, rng, torch.Generator().manual_seed(batch_seed))
        ids = _mismatch_some_captions(ids, t, rng)
        with torch.no_grad():
            context = text_encoder(ids)[0]
        loss = (unet(noisy, t, context).sample - noise).pow(2).mean()
        denoiser_update(loss, opt, params, ema, bar, f"low-noise step {step}; lower --low-noise-lr")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.low_noise_steps:
            save_checkpoint(folder, models, opt, step + 1, ema)
