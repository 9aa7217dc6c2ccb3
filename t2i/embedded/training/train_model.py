"""Train the embedded shapes-world model from a fixed seed, resumably.

    python -m t2i.embedded.training.train_model --out t2i/embedded/model --work ~/.cache/t2i-train

Stages, each resumable from the work folder: (1) the tokenizer, (2) the VAE on fresh renders (edge-weighted),
optionally then its decoder alone (refine.py, --decoder-steps), (3) encode a fixed training set once (on CPU,
re-encoding every step would cost more than the UNet), (4) the text encoder alone, to read captions
(text_pretrain.py), (5) the UNet on the cached latents, with EMA and the text encoder frozen, then a short
plain-epsilon stage for the low noise levels (refine.py), (6) export a plain diffusers folder.
Every batch is drawn from an RNG seeded by (seed, step), so a resumed run gives the same weights.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from t2i.embedded.training.architecture import make_sample_scheduler, make_unet, make_vae
from t2i.embedded.training.checkpoints import load_checkpoint, save_checkpoint, writable_dir
from t2i.embedded.training.refine import refine_decoder, refine_low_noise
from t2i.embedded.training.text_pretrain import pretrain_text_encoder
from t2i.embedded.training.tokenizer_build import build_tokenizer
from t2i.embedded.training.batches import (autoencoder_batch, denoiser_batch, denoiser_update, described_caption,
                               images_to_tensor, load_denoiser_setup, load_text_encoder, reconstruction_loss,
                               training_scenes)
from t2i.embedded.world import render

STAGES = ("all", "tokenizer", "vae", "decoder", "encode", "text", "denoiser", "low_noise", "export")


@dataclass
class TrainConfig:
    out: Path
    work: Path
    seed: int = 0
    vae_steps: int = 6000
    vae_batch: int = 12
    vae_lr: float = 5e-4
    vae_edge_weight: float = 10.0  # extra loss weight on pixels at colour edges (corners of small shapes)
    decoder_steps: int = 0  # decoder-only refinement (refine.py); the edge-weighted VAE does not need it
    decoder_lr: float = 5e-4
    text_steps: int = 800  # text-encoder pretraining (text_pretrain.py); the denoiser stages keep it frozen
    text_batch: int = 128
    text_lr: float = 1e-3
    unet_steps: int = 8250
    batch: int = 48
    lr: float = 5e-4
    low_noise_steps: int = 1000  # plain-epsilon refinement of the denoiser (refine.py)
    low_noise_lr: float = 2e-4
    n_scenes: int = 30000
    pair_fraction: float = 0.3
    checkpoint_every: int = 250
    uncond_fraction: float = 0.1  # empty captions, for classifier-free guidance
    offset_noise: float = 0.05  # lets the model reach flat dark/bright backgrounds


def train_vae(cfg: TrainConfig, device: torch.device) -> None:
    """Stage 2: the autoencoder, on busy images of all colours and render styles (the trainer needs them later)."""
    done = cfg.work / "vae" / "diffusion_pytorch_model.safetensors"
    if done.exists():
        return
    vae = make_vae().to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    start = load_checkpoint(cfg.work / "vae_ckpt", {"vae": vae}, opt)
    bar = tqdm(range(start, cfg.vae_steps), initial=start, total=cfg.vae_steps, desc="vae", file=sys.stdout)
    for step in bar:
        x = autoencoder_batch(random.Random(cfg.seed * 1_000_003 + step), cfg.vae_batch, device)
        for group in opt.param_groups:  # cosine decay to a tenth
            group["lr"] = cfg.vae_lr * (0.55 + 0.45 * math.cos(math.pi * step / cfg.vae_steps))
        posterior = vae.encode(x).latent_dist
        # decode the mean and push the variance to ~0: sampled latents would blur what it learns
        recon = vae.decode(posterior.mode()).sample
        loss = reconstruction_loss(recon, x, cfg.vae_edge_weight) + posterior.var.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % cfg.checkpoint_every == 0:
            save_checkpoint(cfg.work / "vae_ckpt", {"vae": vae}, opt, step + 1)
    vae.save_pretrained(cfg.work / "vae")


@torch.no_grad()
def encode_training_set(cfg: TrainConfig, device: torch.device) -> float:
    """Stage 3: latents of every training scene, once. Returns the VAE scaling factor."""
    path = cfg.work / "latents.safetensors"
    if not path.exists():
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(cfg.work / "vae").to(device).eval()
        scenes = training_scenes(cfg)
        chunks = []
        for i in tqdm(range(0, len(scenes), 256), desc="encode", file=sys.stdout):
            x = images_to_tensor(render(s) for s in scenes[i:i + 256]).to(device)
            chunks.append(vae.encode(x).latent_dist.mode().cpu().clone())
        latents = torch.cat(chunks).contiguous()
        save_file({"latents": latents, "scaling_factor": (1.0 / latents.std()).reshape(1)}, str(path))
    return float(load_file(str(path))["scaling_factor"][0])


def train_denoiser(cfg: TrainConfig, device: torch.device) -> None:
    """Stage 5: the UNet from scratch on cached latents, min-SNR weighted, with EMA."""
    from diffusers.training_utils import EMAModel

    setup = load_denoiser_setup(cfg, device)
    unet, text_encoder = setup["unet"], setup["text_encoder"]
    params = list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2)
    ema = EMAModel(params, decay=0.9995, use_ema_warmup=True, power=0.75)
    models = {"unet": unet}
    start = load_checkpoint(cfg.work / "denoiser_ckpt", models, opt, ema)
    alphas = setup["scheduler"].alphas_cumprod.to(device)
    bar = tqdm(range(start, cfg.unet_steps), initial=start, total=cfg.unet_steps, desc="denoiser", file=sys.stdout)
    for step in bar:
        rng = random.Random(cfg.seed * 1_000_003 + 500_009 + step)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        noisy, t, ids, noise = denoiser_batch(setup, cfg, rng, gen)
        for group in opt.param_groups:  # linear warm-up, then constant (EMA does the averaging)
            group["lr"] = cfg.lr * min(1.0, (step + 1) / 300)
        with torch.no_grad():
            context = text_encoder(ids)[0]
        pred = unet(noisy, t, context).sample
        snr = alphas[t] / (1 - alphas[t])
        weight = torch.clamp(snr, max=5.0) / snr  # min-SNR-5 for epsilon prediction
        loss = (weight * (pred - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        denoiser_update(loss, opt, params, ema, bar, f"step {step}; lower --lr and resume")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.unet_steps:
            save_checkpoint(cfg.work / "denoiser_ckpt", models, opt, step + 1, ema)


def export(cfg: TrainConfig, scaling_factor: float) -> None:
    """Stage 5: a plain diffusers folder (EMA weights) that StableDiffusionPipeline loads."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline
    from diffusers.training_utils import EMAModel
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(cfg.work / "tokenizer")
    unet = make_unet()
    text_encoder = load_text_encoder(cfg, tokenizer)
    ema = EMAModel(unet.parameters())
    last_stage = "low_noise_ckpt" if cfg.low_noise_steps else "denoiser_ckpt"
    load_checkpoint(cfg.work / last_stage, {"unet": unet}, None, ema)
    ema.copy_to(unet.parameters())
    vae = AutoencoderKL.from_pretrained(cfg.work / ("vae_refined" if cfg.decoder_steps else "vae"))
    vae.register_to_config(scaling_factor=scaling_factor)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=make_sample_scheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    # UNet and VAE stored as float16 to halve the download (diffusers loads them back as float32); the text
    # encoder stays float32, since transformers would load it as float16 and mix dtypes in the pipeline
    pipe.unet.to(torch.float16)
    pipe.vae.to(torch.float16)
    pipe.save_pretrained(cfg.out, safe_serialization=True)
    for name in ("vocab.json", "merges.txt"):  # the CLIP-format files, beside transformers' tokenizer.json
        shutil.copy(cfg.work / "tokenizer" / name, cfg.out / "tokenizer" / name)
    (cfg.out / "training_config.json").write_text(json.dumps(asdict(cfg), default=str, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the embedded shapes-world model (resumable).")
    parser.add_argument("--out", type=Path, required=True, help="folder for the finished diffusers model")
    parser.add_argument("--work", type=Path, required=True, help="folder for checkpoints and cached latents")
    parser.add_argument("--stage", choices=STAGES, default="all",
                        help="run one stage (each needs the ones before it)")
    for field in ("seed", "vae_steps", "decoder_steps", "text_steps", "text_batch", "unet_steps", "low_noise_steps",
                  "batch", "n_scenes", "checkpoint_every"):
        parser.add_argument("--" + field.replace("_", "-"), type=int, default=TrainConfig.__dataclass_fields__[field].default)
    for field in ("lr", "vae_edge_weight"):
        parser.add_argument("--" + field.replace("_", "-"), type=float, default=TrainConfig.__dataclass_fields__[field].default)
    args = vars(parser.parse_args(argv))
    stage = args.pop("stage")
    cfg = TrainConfig(**args)
    if cfg.text_steps < 1:
        print("error: --text-steps must be at least 1: the denoiser stages read captions with the pretrained "
              "text encoder", file=sys.stderr)
        return 2
    for folder in (cfg.work, cfg.out):
        problem = writable_dir(folder)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.use_deterministic_algorithms(True, warn_only=True)
    if stage in ("all", "tokenizer") and not (cfg.work / "tokenizer" / "vocab.json").exists():
        build_tokenizer(cfg.work / "tokenizer")
    if stage in ("all", "vae"):
        train_vae(cfg, device)
    if stage in ("all", "decoder") and cfg.decoder_steps:
        refine_decoder(cfg, device)
    if stage in ("all", "encode", "denoiser", "low_noise", "export"):
        scaling_factor = encode_training_set(cfg, device)
    if stage in ("all", "text"):
        from transformers import CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(cfg.work / "tokenizer")
        pretrain_text_encoder(cfg, tokenizer, training_scenes(cfg), described_caption, device)
    if stage in ("all", "denoiser"):
        train_denoiser(cfg, device)
    if stage in ("all", "low_noise") and cfg.low_noise_steps:
        refine_low_noise(cfg, device)
    if stage in ("all", "export"):
        export(cfg, scaling_factor)
        print(f"saved the model to {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
